//! VADER (Valence Aware Dictionary and sEntiment Reasoner) sentiment analysis: a port of
//! the Python package vaderSentiment 3.3.2 (MIT licence, Copyright (c) 2016 C.J. Hutto;
//! see vader/README.md) with its two lexicons embedded unchanged.
//!
//! The scores equal the package's on any text, including its quirks: the rules are ported
//! function by function under the Python names, and where Python's semantics differ from
//! Rust's (whitespace, `isupper`, `round`, `sum`, `list.index`) the Python behaviour is
//! reproduced and said so at the spot. The reference is the package under Python 3.11,
//! whose tables are Unicode 14.0 and whose `sum()` adds floats plainly (3.12 compensates,
//! which changes the scores of texts whose valences cancel exactly).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The package's `vader_lexicon.txt`: token, mean valence, standard deviation, ratings.
const VADER_LEXICON: &str = include_str!("vader/vader_lexicon.txt");
/// The package's `emoji_utf8_lexicon.txt`: emoji, description.
const EMOJI_LEXICON: &str = include_str!("vader/emoji_utf8_lexicon.txt");

// (empirically derived mean sentiment intensity rating increase for booster words)
const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;

// (empirically derived mean sentiment intensity rating increase for using ALLCAPs to
// emphasize a word)
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

#[rustfmt::skip]
const NEGATE: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't",
    "aren't", "can't", "couldn't", "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt",
    "havent", "isnt", "mightnt", "mustnt", "neither", "don't", "hadn't", "hasn't", "haven't",
    "isn't", "mightn't", "mustn't", "neednt", "needn't", "never", "none", "nope", "nor", "not",
    "nothing", "nowhere", "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent", "oughtn't",
    "shan't", "shouldn't", "uh-uh", "wasn't", "weren't", "without", "wont", "wouldnt", "won't",
    "wouldn't", "rarely", "seldom", "despite",
];

/// Booster/dampener "intensifiers" or "degree adverbs". The two-word entries can never
/// equal a single token (tokens hold no whitespace); they act through the n-grams of
/// `special_idioms_check` only.
#[rustfmt::skip]
const BOOSTER_DICT: &[(&str, f64)] = &[
    ("absolutely", B_INCR), ("amazingly", B_INCR), ("awfully", B_INCR),
    ("completely", B_INCR), ("considerable", B_INCR), ("considerably", B_INCR),
    ("decidedly", B_INCR), ("deeply", B_INCR), ("effing", B_INCR), ("enormous", B_INCR),
    ("enormously", B_INCR), ("entirely", B_INCR), ("especially", B_INCR),
    ("exceptional", B_INCR), ("exceptionally", B_INCR), ("extreme", B_INCR),
    ("extremely", B_INCR), ("fabulously", B_INCR), ("flipping", B_INCR), ("flippin", B_INCR),
    ("frackin", B_INCR), ("fracking", B_INCR), ("fricking", B_INCR), ("frickin", B_INCR),
    ("frigging", B_INCR), ("friggin", B_INCR), ("fully", B_INCR), ("fuckin", B_INCR),
    ("fucking", B_INCR), ("fuggin", B_INCR), ("fugging", B_INCR), ("greatly", B_INCR),
    ("hella", B_INCR), ("highly", B_INCR), ("hugely", B_INCR), ("incredible", B_INCR),
    ("incredibly", B_INCR), ("intensely", B_INCR), ("major", B_INCR), ("majorly", B_INCR),
    ("more", B_INCR), ("most", B_INCR), ("particularly", B_INCR), ("purely", B_INCR),
    ("quite", B_INCR), ("really", B_INCR), ("remarkably", B_INCR), ("so", B_INCR),
    ("substantially", B_INCR), ("thoroughly", B_INCR), ("total", B_INCR), ("totally", B_INCR),
    ("tremendous", B_INCR), ("tremendously", B_INCR), ("uber", B_INCR),
    ("unbelievably", B_INCR), ("unusually", B_INCR), ("utter", B_INCR), ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR), ("barely", B_DECR), ("hardly", B_DECR), ("just enough", B_DECR),
    ("kind of", B_DECR), ("kinda", B_DECR), ("kindof", B_DECR), ("kind-of", B_DECR),
    ("less", B_DECR), ("little", B_DECR), ("marginal", B_DECR), ("marginally", B_DECR),
    ("occasional", B_DECR), ("occasionally", B_DECR), ("partly", B_DECR), ("scarce", B_DECR),
    ("scarcely", B_DECR), ("slight", B_DECR), ("slightly", B_DECR), ("somewhat", B_DECR),
    ("sort of", B_DECR), ("sorta", B_DECR), ("sortof", B_DECR), ("sort-of", B_DECR),
];

// The package also defines SENTIMENT_LADEN_IDIOMS ("cut the mustard", "in the red", ...)
// and `_sentiment_laden_idioms_check`, marked "future work" and never called: such idioms
// do not change any score, so neither is ported.

/// Special-case idioms and phrases containing lexicon words: they replace the valence.
#[rustfmt::skip]
const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0), ("the bomb", 3.0), ("bad ass", 1.5), ("badass", 1.5), ("bus stop", 0.0),
    ("yeah right", -2.0), ("kiss of death", -1.5), ("to die for", 3.0),
    ("beating heart", 3.5),
];

fn booster(word: &str) -> Option<f64> {
    BOOSTER_DICT
        .iter()
        .find(|(key, _)| *key == word)
        .map(|&(_, scalar)| scalar)
}

fn special_case(phrase: &str) -> Option<f64> {
    SPECIAL_CASES
        .iter()
        .find(|(key, _)| *key == phrase)
        .map(|&(_, valence)| valence)
}

/// VADER's scores of a text: the proportions of negative, neutral and positive tokens
/// (rounded to 3 decimals) and the normalised compound score from −1 (most negative) to 1
/// (rounded to 4 decimals), all as the package's `polarity_scores` gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub negative: f64,
    pub neutral: f64,
    pub positive: f64,
    pub compound: f64,
}

/// The package's `SentimentIntensityAnalyzer().polarity_scores(text)`.
pub fn polarity_scores(text: &str) -> Scores {
    ANALYZER.polarity_scores(text)
}

/// The package's `polarity_scores(text)['compound']`, rounded to 4 decimals as it is.
pub fn compound(text: &str) -> f64 {
    polarity_scores(text).compound
}

static ANALYZER: LazyLock<SentimentIntensityAnalyzer> =
    LazyLock::new(SentimentIntensityAnalyzer::new);

// ---------------------------------------------------------------------------------------
// Python string semantics

/// Python's `str.isspace()`, which `str.split()` and `str.strip()` use: unlike
/// `char::is_whitespace` it includes the separators U+001C..U+001F.
fn py_is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}'..='\u{1F}' | ' ' | '\u{85}'
            | '\u{A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{2028}' | '\u{2029}'
            | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Python's `str.strip()` with no argument.
fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// Python's `str.split()` with no argument: runs of whitespace separate, none are empty.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_is_space).filter(|word| !word.is_empty())
}

/// Python's `str.lower()`. `str::to_lowercase` differs from it only on letters cased
/// after Unicode 14.0 (Python 3.11's tables), which lower to non-ASCII letters in both;
/// the lowered words are only ever compared with ASCII words, the lexicon's (ASCII and
/// the never-matching `:Þ`, `:-Þ`) and the rules', so those differences cannot matter.
fn py_lower(s: &str) -> String {
    s.to_lowercase()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PyCase {
    /// Lowercase or titlecase: makes `isupper()` false.
    LowerOrTitle,
    Upper,
    Uncased,
}

/// Titlecase letters (category Lt) of Unicode 14.0, which Python's `isupper()` rejects
/// like lowercase ones; std has no test for them.
#[rustfmt::skip]
const TITLECASE: &[char] = &[
    '\u{1C5}', '\u{1C8}', '\u{1CB}', '\u{1F2}', '\u{1F88}', '\u{1F89}', '\u{1F8A}',
    '\u{1F8B}', '\u{1F8C}', '\u{1F8D}', '\u{1F8E}', '\u{1F8F}', '\u{1F98}', '\u{1F99}',
    '\u{1F9A}', '\u{1F9B}', '\u{1F9C}', '\u{1F9D}', '\u{1F9E}', '\u{1F9F}', '\u{1FA8}',
    '\u{1FA9}', '\u{1FAA}', '\u{1FAB}', '\u{1FAC}', '\u{1FAD}', '\u{1FAE}', '\u{1FAF}',
    '\u{1FBC}', '\u{1FCC}', '\u{1FFC}',
];

/// Where Python 3.11 (Unicode 14.0) and std (up to Unicode 17.0) case a character
/// differently: Python's case. Found by comparing both on every code point; U+0295 was
/// lowercase until Unicode 16.0, the others were assigned or became cased after 14.0.
const PY_CASE_OVERRIDES: &[(char, char, PyCase)] = &[
    ('\u{295}', '\u{295}', PyCase::LowerOrTitle),
    ('\u{10FC}', '\u{10FC}', PyCase::Uncased),
    ('\u{1C89}', '\u{1C8A}', PyCase::Uncased),
    ('\u{A7CB}', '\u{A7CF}', PyCase::Uncased),
    ('\u{A7D2}', '\u{A7D2}', PyCase::Uncased),
    ('\u{A7D4}', '\u{A7D4}', PyCase::Uncased),
    ('\u{A7DA}', '\u{A7DC}', PyCase::Uncased),
    ('\u{A7F1}', '\u{A7F4}', PyCase::Uncased),
    ('\u{AB69}', '\u{AB69}', PyCase::Uncased),
    ('\u{10D50}', '\u{10D65}', PyCase::Uncased),
    ('\u{10D70}', '\u{10D85}', PyCase::Uncased),
    ('\u{16EA0}', '\u{16EB8}', PyCase::Uncased),
    ('\u{16EBB}', '\u{16ED3}', PyCase::Uncased),
    ('\u{1DF25}', '\u{1DF2A}', PyCase::Uncased),
    ('\u{1E030}', '\u{1E06D}', PyCase::Uncased),
];

fn py_case(c: char) -> PyCase {
    if let Some(&(_, _, case)) = PY_CASE_OVERRIDES
        .iter()
        .find(|&&(first, last, _)| (first..=last).contains(&c))
    {
        return case;
    }
    if c.is_lowercase() || TITLECASE.contains(&c) {
        PyCase::LowerOrTitle
    } else if c.is_uppercase() {
        PyCase::Upper
    } else {
        PyCase::Uncased
    }
}

/// Python's `str.isupper()`: at least one uppercase letter and no lowercase or titlecase
/// one; uncased characters (digits, punctuation, most scripts) do not count, so "A1!" is
/// upper and "1!" is not.
fn py_isupper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        match py_case(c) {
            PyCase::LowerOrTitle => return false,
            PyCase::Upper => cased = true,
            PyCase::Uncased => {}
        }
    }
    cased
}

/// `string.punctuation`: the 32 ASCII punctuation characters, exactly
/// `char::is_ascii_punctuation`.
fn is_py_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// Python's `round(x, ndigits)` for |x| <= 1: the double nearest to the exact decimal
/// value of `x` rounded to `ndigits` decimals, ties to even. Multiplying by 10^ndigits in
/// floating point would round first and then mistake near-ties, so the rounding is done
/// on the exact binary value: x = m·2^e, and m·10^ndigits·2^e is split exactly into
/// quotient and remainder.
fn py_round(x: f64, ndigits: u32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    debug_assert!(x.abs() <= 1.0, "py_round is for scores in [-1, 1]");
    let bits = x.to_bits();
    let biased_exponent = ((bits >> 52) & 0x7ff) as i64;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exponent) = if biased_exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), biased_exponent - 1075)
    };
    if exponent >= 0 {
        return x; // an integer already
    }
    let scale = 10u128.pow(ndigits);
    let shift = (-exponent) as u32;
    let scaled = u128::from(mantissa) * scale; // < 2^53 · 10^ndigits < 2^127 - 1
    let quotient = if shift >= 127 {
        // |x| < 2^-74: far below half a unit of the last decimal
        0
    } else {
        let quotient = scaled >> shift;
        let remainder = scaled - (quotient << shift);
        let half = 1u128 << (shift - 1);
        if remainder > half || (remainder == half && quotient % 2 == 1) {
            quotient + 1
        } else {
            quotient
        }
    };
    // Both are exact doubles (quotient <= 10^ndigits), so the division is the correctly
    // rounded decimal, as Python's conversion of the rounded digits back to a float.
    (quotient as f64 / scale as f64).copysign(x)
}

// ---------------------------------------------------------------------------------------
// Static methods

/// Determine if input contains negation words.
fn negated(input_words: &[&str], include_nt: bool) -> bool {
    let input_words: Vec<String> = input_words.iter().map(|word| py_lower(word)).collect();
    if NEGATE
        .iter()
        .any(|neg| input_words.iter().any(|word| word == neg))
    {
        return true;
    }
    if include_nt && input_words.iter().any(|word| word.contains("n't")) {
        return true;
    }
    false
}

/// Normalize the score to be between -1 and 1 using an alpha that approximates the max
/// expected value.
fn normalize(score: f64, alpha: f64) -> f64 {
    let norm_score = score / ((score * score) + alpha).sqrt();
    norm_score.clamp(-1.0, 1.0)
}

/// Whether some but not all of the words are ALL CAPS.
fn allcap_differential(words: &[&str]) -> bool {
    let allcap_words = words.iter().filter(|word| py_isupper(word)).count();
    let cap_differential = words.len() - allcap_words;
    0 < cap_differential && cap_differential < words.len()
}

/// Whether the preceding word increases, decreases, or negates/nullifies the valence.
fn scalar_inc_dec(word: &str, valence: f64, is_cap_diff: bool) -> f64 {
    let mut scalar = 0.0;
    let word_lower = py_lower(word);
    if let Some(booster_scalar) = booster(&word_lower) {
        scalar = booster_scalar;
        if valence < 0.0 {
            scalar *= -1.0;
        }
        // a booster/dampener in ALLCAPS (while others aren't) adds emphasis
        if py_isupper(word) && is_cap_diff {
            if valence > 0.0 {
                scalar += C_INCR;
            } else {
                scalar -= C_INCR;
            }
        }
    }
    scalar
}

/// Sentiment-relevant string-level properties of the input text.
struct SentiText<'a> {
    /// Whitespace-separated tokens, punctuation stripped off words but not emoticons.
    words_and_emoticons: Vec<&'a str>,
    /// `str(w).lower()` of each token, which the Python recomputes wherever it is used.
    words_and_emoticons_lower: Vec<String>,
    is_cap_diff: bool,
}

impl<'a> SentiText<'a> {
    fn new(text: &'a str) -> Self {
        let words_and_emoticons = Self::words_and_emoticons(text);
        let words_and_emoticons_lower = words_and_emoticons
            .iter()
            .map(|word| py_lower(word))
            .collect();
        let is_cap_diff = allcap_differential(&words_and_emoticons);
        SentiText {
            words_and_emoticons,
            words_and_emoticons_lower,
            is_cap_diff,
        }
    }

    /// Removes all trailing and leading punctuation. If the rest has two or fewer
    /// characters (code points, as Python's `len`), the token was likely an emoticon
    /// (":)" would become ""), so it is kept whole.
    fn strip_punc_if_word(token: &str) -> &str {
        let stripped = token.trim_matches(is_py_punctuation);
        if stripped.chars().count() <= 2 {
            return token;
        }
        stripped
    }

    /// Tokens keep contractions and most emoticons. Tokens of one or two characters are
    /// kept (3.3 no longer drops one-letter words).
    fn words_and_emoticons(text: &str) -> Vec<&str> {
        py_split(text).map(Self::strip_punc_if_word).collect()
    }
}

struct SentimentIntensityAnalyzer {
    lexicon: HashMap<&'static str, f64>,
    /// Only one-character emojis: `polarity_scores` looks the text up a character at a
    /// time, so the lexicon's multi-character sequences (flags, skin tones, ZWJ
    /// sequences) never match and are left out.
    emojis: HashMap<char, &'static str>,
}

impl SentimentIntensityAnalyzer {
    fn new() -> Self {
        SentimentIntensityAnalyzer {
            lexicon: Self::make_lex_dict(VADER_LEXICON),
            emojis: Self::make_emoji_dict(EMOJI_LEXICON),
        }
    }

    /// The lexicon file (CRLF lines, which `strip()` cleans) as a dictionary; a later
    /// line for the same token replaces an earlier one, as in the Python dict.
    fn make_lex_dict(lexicon_file: &'static str) -> HashMap<&'static str, f64> {
        let mut lex_dict = HashMap::new();
        for line in lexicon_file.trim_end_matches('\n').split('\n') {
            if line.is_empty() {
                continue;
            }
            let mut fields = py_strip(line).split('\t');
            let word = fields.next().expect("a lexicon line has a token");
            let measure = fields.next().expect("a lexicon line has a valence");
            let measure: f64 = measure.parse().expect("a lexicon valence is a number");
            lex_dict.insert(word, measure);
        }
        lex_dict
    }

    fn make_emoji_dict(emoji_file: &'static str) -> HashMap<char, &'static str> {
        let mut emoji_dict = HashMap::new();
        for line in emoji_file.trim_end_matches('\n').split('\n') {
            let mut fields = py_strip(line).split('\t');
            let emoji = fields.next().expect("an emoji line has an emoji");
            let description = fields.next().expect("an emoji line has a description");
            let mut chars = emoji.chars();
            if let (Some(emoji), None) = (chars.next(), chars.next()) {
                emoji_dict.insert(emoji, description);
            }
        }
        emoji_dict
    }

    fn in_lexicon(&self, word: &str) -> bool {
        self.lexicon.contains_key(word)
    }

    fn polarity_scores(&self, text: &str) -> Scores {
        // convert emojis to their textual descriptions; only an ASCII space counts as a
        // separator before one, and none is put after it ("😁x" gives "... facex")
        let mut text_no_emoji = String::with_capacity(text.len());
        let mut prev_space = true;
        for chr in text.chars() {
            if let Some(description) = self.emojis.get(&chr) {
                if !prev_space {
                    text_no_emoji.push(' ');
                }
                text_no_emoji.push_str(description);
                prev_space = false;
            } else {
                text_no_emoji.push(chr);
                prev_space = chr == ' ';
            }
        }
        let text = py_strip(&text_no_emoji);

        let sentitext = SentiText::new(text);

        let mut sentiments: Vec<f64> = Vec::new();
        let words_and_emoticons = &sentitext.words_and_emoticons;
        let words_lower = &sentitext.words_and_emoticons_lower;
        for (i, item) in words_and_emoticons.iter().enumerate() {
            let valence = 0.0;
            // vader_lexicon words used as modifiers or negations score nothing themselves
            if booster(&words_lower[i]).is_some() {
                sentiments.push(valence);
                continue;
            }
            if i < words_and_emoticons.len() - 1
                && words_lower[i] == "kind"
                && words_lower[i + 1] == "of"
            {
                sentiments.push(valence);
                continue;
            }

            self.sentiment_valence(valence, &sentitext, item, i, &mut sentiments);
        }

        Self::but_check(words_lower, &mut sentiments);

        Self::score_valence(&sentiments, text)
    }

    fn sentiment_valence(
        &self,
        mut valence: f64,
        sentitext: &SentiText,
        item: &str,
        i: usize,
        sentiments: &mut Vec<f64>,
    ) {
        let is_cap_diff = sentitext.is_cap_diff;
        let words_and_emoticons = &sentitext.words_and_emoticons;
        let words_lower = &sentitext.words_and_emoticons_lower;
        let item_lowercase = words_lower[i].as_str();
        if let Some(&lexicon_valence) = self.lexicon.get(item_lowercase) {
            valence = lexicon_valence;

            // "no" before another lexicon word negates that word instead of counting as
            // the lexicon word "no"
            if item_lowercase == "no"
                && i != words_and_emoticons.len() - 1
                && self.in_lexicon(&words_lower[i + 1])
            {
                valence = 0.0;
            }
            // a "no" one or two words back (three across "or"/"nor") negates the word's
            // lexicon valence, even the 0 just given to a "no" followed by a lexicon
            // word: in "no no" the second is negated, not silenced
            if (i > 0 && words_lower[i - 1] == "no")
                || (i > 1 && words_lower[i - 2] == "no")
                || (i > 2
                    && words_lower[i - 3] == "no"
                    && (words_lower[i - 1] == "or" || words_lower[i - 1] == "nor"))
            {
                valence = lexicon_valence * N_SCALAR;
            }

            // a sentiment-laden word in ALL CAPS (while others aren't); a valence of 0
            // (the "no" above) goes down, as in the Python
            if py_isupper(item) && is_cap_diff {
                if valence > 0.0 {
                    valence += C_INCR;
                } else {
                    valence -= C_INCR;
                }
            }

            for start_i in 0..3 {
                // a booster counts less the farther back it is (x0.95 two words back,
                // x0.9 three); a lexicon word at that distance modifies nothing, and then
                // the negation and idiom checks for that distance are skipped too
                if i > start_i && !self.in_lexicon(&words_lower[i - (start_i + 1)]) {
                    let mut s = scalar_inc_dec(
                        words_and_emoticons[i - (start_i + 1)],
                        valence,
                        is_cap_diff,
                    );
                    if start_i == 1 && s != 0.0 {
                        s *= 0.95;
                    }
                    if start_i == 2 && s != 0.0 {
                        s *= 0.9;
                    }
                    valence += s;
                    valence = Self::negation_check(valence, words_lower, start_i, i);
                    if start_i == 2 {
                        valence = Self::special_idioms_check(valence, words_lower, i);
                    }
                }
            }

            valence = self.least_check(valence, words_lower, i);
        }
        sentiments.push(valence);
    }

    /// Negation by "least", but not in "at least" or "very least".
    fn least_check(&self, mut valence: f64, words_lower: &[String], i: usize) -> f64 {
        if i > 1 && !self.in_lexicon(&words_lower[i - 1]) && words_lower[i - 1] == "least" {
            if words_lower[i - 2] != "at" && words_lower[i - 2] != "very" {
                valence *= N_SCALAR;
            }
        } else if i > 0 && !self.in_lexicon(&words_lower[i - 1]) && words_lower[i - 1] == "least" {
            valence *= N_SCALAR;
        }
        valence
    }

    /// The contrastive conjunction "but": sentiments before the first "but" are halved,
    /// those after it weigh 1.5 times.
    ///
    /// The Python iterates over the list while replacing the element at
    /// `sentiments.index(sentiment)`, the *first* element equal to the current value
    /// (0 == 0.0 == -0.0). So a value that repeats one already scaled (say 1.9 after a
    /// halved 3.8) scales that earlier element again and leaves its own position as it
    /// was. Reproduced exactly; an element is only read when its turn comes, and only
    /// earlier or current positions are ever replaced.
    fn but_check(words_lower: &[String], sentiments: &mut [f64]) {
        let Some(bi) = words_lower.iter().position(|word| word == "but") else {
            return;
        };
        for k in 0..sentiments.len() {
            let sentiment = sentiments[k];
            let si = sentiments
                .iter()
                .position(|&s| s == sentiment)
                .expect("the current element is in the list");
            if si < bi {
                sentiments[si] = sentiment * 0.5;
            } else if si > bi {
                sentiments[si] = sentiment * 1.5;
            }
        }
    }

    /// Called for the item at `i` > 2 only, so the three preceding words exist.
    fn special_idioms_check(mut valence: f64, words_lower: &[String], i: usize) -> f64 {
        let w = words_lower;
        let onezero = format!("{} {}", w[i - 1], w[i]);
        let twoonezero = format!("{} {} {}", w[i - 2], w[i - 1], w[i]);
        let twoone = format!("{} {}", w[i - 2], w[i - 1]);
        let threetwoone = format!("{} {} {}", w[i - 3], w[i - 2], w[i - 1]);
        let threetwo = format!("{} {}", w[i - 3], w[i - 2]);

        let sequences = [&onezero, &twoonezero, &twoone, &threetwoone, &threetwo];
        for seq in sequences {
            if let Some(special) = special_case(seq) {
                valence = special;
                break;
            }
        }

        if w.len() - 1 > i {
            let zeroone = format!("{} {}", w[i], w[i + 1]);
            if let Some(special) = special_case(&zeroone) {
                valence = special;
            }
        }
        if w.len() - 1 > i + 1 {
            let zeroonetwo = format!("{} {} {}", w[i], w[i + 1], w[i + 2]);
            if let Some(special) = special_case(&zeroonetwo) {
                valence = special;
            }
        }

        // booster/dampener bi-grams such as 'sort of' or 'kind of'
        let n_grams = [&threetwoone, &threetwo, &twoone];
        for n_gram in n_grams {
            if let Some(scalar) = booster(n_gram) {
                valence += scalar;
            }
        }
        valence
    }

    /// Negation by the word `start_i + 1` places before the item, with the exceptions
    /// "never so/this" (emphasis) and "without doubt".
    fn negation_check(mut valence: f64, words_lower: &[String], start_i: usize, i: usize) -> f64 {
        let w = words_lower;
        if start_i == 0 && negated(&[&w[i - (start_i + 1)]], true) {
            // 1 word preceding lexicon word (w/o stopwords)
            valence *= N_SCALAR;
        }
        if start_i == 1 {
            if w[i - 2] == "never" && (w[i - 1] == "so" || w[i - 1] == "this") {
                valence *= 1.25;
            } else if w[i - 2] == "without" && w[i - 1] == "doubt" {
                // valence unchanged
            } else if negated(&[&w[i - (start_i + 1)]], true) {
                // 2 words preceding the lexicon word position
                valence *= N_SCALAR;
            }
        }
        if start_i == 2 {
            // Python's `a and (b or c) or (d or e)`: "so" or "this" just before the item
            // emphasises it whatever comes three words before.
            if (w[i - 3] == "never" && (w[i - 2] == "so" || w[i - 2] == "this"))
                || (w[i - 1] == "so" || w[i - 1] == "this")
            {
                valence *= 1.25;
            } else if w[i - 3] == "without" && (w[i - 2] == "doubt" || w[i - 1] == "doubt") {
                // valence unchanged
            } else if negated(&[&w[i - (start_i + 1)]], true) {
                // 3 words preceding the lexicon word position
                valence *= N_SCALAR;
            }
        }
        valence
    }

    /// Emphasis from exclamation points and question marks.
    fn punctuation_emphasis(text: &str) -> f64 {
        let ep_amplifier = Self::amplify_ep(text);
        let qm_amplifier = Self::amplify_qm(text);
        ep_amplifier + qm_amplifier
    }

    /// Exclamation points, up to 4 of them, anywhere in the text (after emojis became
    /// descriptions, two of which contain one: "ON! arrow", "UP! button").
    fn amplify_ep(text: &str) -> f64 {
        let ep_count = text.matches('!').count().min(4);
        // (empirically derived mean sentiment intensity rating increase for exclamation
        // points)
        ep_count as f64 * 0.292
    }

    /// Question marks: 2 or 3 count 0.18 each, more count 0.96, one counts nothing.
    fn amplify_qm(text: &str) -> f64 {
        let qm_count = text.matches('?').count();
        let mut qm_amplifier = 0.0;
        if qm_count > 1 {
            if qm_count <= 3 {
                // (empirically derived mean sentiment intensity rating increase for
                // question marks)
                qm_amplifier = qm_count as f64 * 0.18;
            } else {
                qm_amplifier = 0.96;
            }
        }
        qm_amplifier
    }

    /// Separate positive and negative sums, and the count of neutral tokens.
    fn sift_sentiment_scores(sentiments: &[f64]) -> (f64, f64, usize) {
        let mut pos_sum = 0.0;
        let mut neg_sum = 0.0;
        let mut neu_count = 0;
        for &sentiment_score in sentiments {
            if sentiment_score > 0.0 {
                pos_sum += sentiment_score + 1.0; // compensates for neutral words that are counted as 1
            }
            if sentiment_score < 0.0 {
                neg_sum += sentiment_score - 1.0; // when used with abs(), compensates for neutrals
            }
            if sentiment_score == 0.0 {
                neu_count += 1;
            }
        }
        (pos_sum, neg_sum, neu_count)
    }

    fn score_valence(sentiments: &[f64], text: &str) -> Scores {
        let (compound, pos, neg, neu);
        if !sentiments.is_empty() {
            // Python 3.11's sum(): left to right from 0 (`Iterator::sum` starts from -0.0)
            let mut sum_s = sentiments.iter().fold(0.0, |sum, &s| sum + s);
            // compute and add emphasis from punctuation in text
            let punct_emph_amplifier = Self::punctuation_emphasis(text);
            if sum_s > 0.0 {
                sum_s += punct_emph_amplifier;
            } else if sum_s < 0.0 {
                sum_s -= punct_emph_amplifier;
            }

            compound = normalize(sum_s, 15.0);
            // discriminate between positive, negative and neutral sentiment scores
            let (mut pos_sum, mut neg_sum, neu_count) = Self::sift_sentiment_scores(sentiments);

            if pos_sum > neg_sum.abs() {
                pos_sum += punct_emph_amplifier;
            } else if pos_sum < neg_sum.abs() {
                neg_sum -= punct_emph_amplifier;
            }

            let total = pos_sum + neg_sum.abs() + neu_count as f64;
            pos = (pos_sum / total).abs();
            neg = (neg_sum / total).abs();
            neu = (neu_count as f64 / total).abs();
        } else {
            compound = 0.0;
            pos = 0.0;
            neg = 0.0;
            neu = 0.0;
        }

        Scores {
            negative: py_round(neg, 3),
            neutral: py_round(neu, 3),
            positive: py_round(pos, 3),
            compound: py_round(compound, 4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value is what vaderSentiment 3.3.2 gives under Python 3.11.

    #[track_caller]
    fn assert_compounds(cases: &[(&str, f64)]) {
        for &(text, expected) in cases {
            assert_eq!(compound(text), expected, "compound of {text:?}");
        }
    }

    #[test]
    fn the_package_examples_score_as_in_python() {
        assert_compounds(&[
            ("VADER is smart, handsome, and funny.", 0.8316),
            ("VADER is smart, handsome, and funny!", 0.8439),
            ("VADER is very smart, handsome, and funny.", 0.8545),
            ("VADER is VERY SMART, handsome, and FUNNY.", 0.9227),
            ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
            (
                "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
                0.9469,
            ),
            ("VADER is not smart, handsome, nor funny.", -0.7424),
            ("The book was good.", 0.4404),
            ("At least it isn't a horrible book.", 0.431),
            ("The book was only kind of good.", 0.3832),
            (
                "The plot was good, but the characters are uncompelling and the dialog is not great.",
                -0.7042,
            ),
            ("Today SUX!", -0.5461),
            ("Today only kinda sux! But I'll get by, lol", 0.5249),
            ("Make sure you :) or :D today!", 0.8633),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            ("Not bad at all", 0.431),
            ("Sentiment analysis has never been good.", -0.3412),
            ("Sentiment analysis has never been this good!", 0.5672),
            ("Most automated sentiment analysis tools are shit.", -0.5574),
            ("With VADER, sentiment analysis is the shit!", 0.6476),
            ("Other sentiment analysis tools can be quite bad.", -0.5849),
            ("On the other hand, VADER is quite bad ass", 0.802),
            ("VADER is such a badass!", 0.4003),
            ("Without a doubt, excellent idea.", 0.7013),
            (
                "Roger Dodger is one of the most compelling variations on this theme.",
                0.2944,
            ),
            (
                "Roger Dodger is at least compelling as a variation on the theme.",
                0.2263,
            ),
            (
                "Roger Dodger is one of the least compelling variations on this theme.",
                -0.1695,
            ),
            ("Not such a badass after all.", -0.2584),
            ("Without a doubt, an excellent idea.", 0.7013),
        ]);
    }

    #[test]
    fn polarity_scores_gives_the_proportions_rounded_to_three_decimals() {
        assert_eq!(
            polarity_scores("VADER is smart, handsome, and funny."),
            Scores {
                negative: 0.0,
                neutral: 0.254,
                positive: 0.746,
                compound: 0.8316
            }
        );
        assert_eq!(
            polarity_scores(
                "The plot was good, but the characters are uncompelling and the dialog is not great."
            ),
            Scores {
                negative: 0.327,
                neutral: 0.579,
                positive: 0.094,
                compound: -0.7042
            }
        );
        assert_eq!(
            polarity_scores("no good or bad"),
            Scores {
                negative: 0.332,
                neutral: 0.276,
                positive: 0.393,
                compound: 0.1139
            }
        );
    }

    #[test]
    fn blank_text_scores_zero() {
        let zero = Scores {
            negative: 0.0,
            neutral: 0.0,
            positive: 0.0,
            compound: 0.0,
        };
        for text in ["", "   ", "\u{1C}", "\t\u{3000}"] {
            assert_eq!(polarity_scores(text), zero, "{text:?}");
        }
    }

    #[test]
    fn exclamation_points_amplify_up_to_four() {
        assert_compounds(&[
            ("good", 0.4404),
            ("good!", 0.4926),
            ("good!!!!", 0.6209),
            ("good!!!!!", 0.6209),
        ]);
    }

    #[test]
    fn question_marks_amplify_from_two() {
        assert_compounds(&[
            ("good?", 0.4404),
            ("good??", 0.504),
            ("good???", 0.533),
            ("good????", 0.594),
            ("good?????", 0.594),
        ]);
    }

    #[test]
    fn a_booster_word_intensifies_more_in_all_caps() {
        assert_compounds(&[
            ("very good", 0.4927),
            ("so good", 0.4927),
            ("VERY good", 0.6028),
            ("VERY good day", 0.6028),
        ]);
    }

    #[test]
    fn all_caps_emphasise_only_among_lower_case_words() {
        assert_compounds(&[("VADER IS SMART", 0.4019), ("VADER is SMART", 0.5319)]);
    }

    #[test]
    fn negation_flips_a_positive_word() {
        assert_compounds(&[
            ("good", 0.4404),
            ("not good", -0.3412),
            ("isn't good", -0.3412),
            // any word with "n't" negates, listed or not
            ("wouldn't've good", -0.3412),
            ("Not bad at all", 0.431),
        ]);
    }

    #[test]
    fn never_so_and_never_this_emphasise_instead_of_negating() {
        assert_compounds(&[
            ("Sentiment analysis has never been good.", -0.3412),
            ("never so good", 0.5777),
            ("never this good", 0.5228),
            // "this" just before the word emphasises it without any "never"
            ("it was this good", 0.5228),
        ]);
    }

    #[test]
    fn without_doubt_does_not_negate() {
        assert_compounds(&[
            ("without a doubt good", 0.6136),
            ("Without a doubt, an excellent idea.", 0.7013),
        ]);
    }

    #[test]
    fn least_negates_except_after_at_and_very() {
        assert_compounds(&[
            ("least good", -0.3412),
            ("the least good", -0.3412),
            ("at least good", 0.4404),
            ("the very least good", 0.4902),
        ]);
    }

    #[test]
    fn no_negates_the_lexicon_words_after_it() {
        assert_compounds(&[
            // alone, "no" is a lexicon word
            ("no", -0.296),
            ("no good", -0.3412),
            ("no problem", 0.3089),
            // the second "no" is negated by the first
            ("no no", 0.2235),
            ("no good or bad", 0.1139),
        ]);
    }

    #[test]
    fn an_all_caps_no_before_a_lexicon_word_counts_down() {
        // "NO" gets valence 0 for negating "good", then the ALL CAPS rule lowers it
        assert_compounds(&[("no good", -0.3412), ("NO good", -0.4835)]);
    }

    #[test]
    fn but_weighs_what_follows_more_than_what_precedes() {
        assert_compounds(&[
            ("bad but good", 0.3818),
            ("good good but good good", 0.891),
            ("Today only kinda sux! But I'll get by, lol", 0.5249),
        ]);
    }

    #[test]
    fn but_rescales_the_first_equal_sentiment_as_python_list_index_does() {
        // "nice" (1.8) is halved to 0.9 before "but"; "okay" (0.9) after it then finds that
        // element first and halves it again, keeping its own 0.9: the sum is 1.35, not
        // the 2.25 of scaling each word once (compound 0.5023)
        assert_compounds(&[
            ("It was nice but okay", 0.3291),
            ("It was nice but fine", 0.4767),
        ]);
    }

    #[test]
    fn kind_of_and_sort_of_dampen() {
        assert_compounds(&[
            ("The book was only kind of good.", 0.3832),
            ("it is kind of good", 0.3832),
            ("it is sort of good", 0.3832),
            ("it is kinda good", 0.3832),
        ]);
    }

    #[test]
    fn special_idioms_replace_the_valence_from_the_fourth_word_on() {
        assert_compounds(&[
            ("it is the bomb", 0.6124),
            // the idioms are only looked for behind a word three places back
            ("the bomb", -0.4939),
            ("With VADER, sentiment analysis is the shit!", 0.6476),
            ("On the other hand, VADER is quite bad ass", 0.802),
            ("VADER is such a badass!", 0.4003),
            ("yeah right", 0.296),
        ]);
    }

    #[test]
    fn sentiment_laden_idioms_do_not_count() {
        // only the lexicon word "cut" scores
        assert_compounds(&[("in the red", 0.0), ("cut the mustard", -0.2732)]);
    }

    #[test]
    fn an_emoji_counts_as_its_description() {
        assert_compounds(&[
            ("😁", 0.4588),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            // a space is put before a description that touches a word
            ("good😁", 0.7096),
            ("good 😁", 0.7096),
            // sequences of several characters (flags) are never replaced
            ("🇬🇧", 0.0),
            // the description "ON! arrow" brings its exclamation point
            ("🔛 good", 0.4926),
        ]);
    }

    #[test]
    fn emoticons_are_kept_whole() {
        assert_compounds(&[
            (":)", 0.4588),
            (":-(", -0.3612),
            ("<3", 0.4404),
            ("Make sure you :) or :D today!", 0.8633),
        ]);
    }

    #[test]
    fn python_whitespace_separates_words() {
        // U+001C is whitespace to Python, not to `char::is_whitespace`
        assert_compounds(&[("GOOD bad", 0.0343), ("GOOD\u{1C}bad", 0.0343)]);
    }

    #[test]
    fn python_isupper_decides_all_caps() {
        assert_compounds(&[
            ("GOOD GREAT", 0.7906),
            // U+0295 is lowercase to Python 3.11 (Unicode 14.0), uncased to std: "GOODʕ"
            // is not ALL CAPS, so "GREAT" stands out
            ("GOODʕ GREAT", 0.7034),
            // a titlecase letter also makes a word not ALL CAPS
            ("GREATǅ GREAT", 0.7034),
        ]);
        assert!(py_isupper("A1!"));
        assert!(!py_isupper("1!"));
        assert!(!py_isupper("GOOD\u{295}"));
        assert!(
            !py_isupper("\u{A7DA}"),
            "uppercase since Unicode 16.0, uncased in 14.0"
        );
    }

    #[test]
    fn the_case_overrides_cover_std_unicode() {
        // PY_CASE_OVERRIDES lists every difference between Python 3.11 and std up to
        // Unicode 17.0; a newer std may case letters assigned since, which Python does not.
        assert!(
            char::UNICODE_VERSION <= (17, 0, 0),
            "std has Unicode {:?}: compare its casing with Python 3.11's on every code point \
             and extend PY_CASE_OVERRIDES",
            char::UNICODE_VERSION
        );
    }

    #[test]
    fn py_round_rounds_the_exact_binary_value_half_to_even() {
        // 0.03125 is an exact tie: to even
        assert_eq!(py_round(0.03125, 4), 0.0312);
        assert_eq!(py_round(-0.03125, 4), -0.0312);
        assert_eq!(py_round(0.0625, 3), 0.062);
        assert_eq!(py_round(0.4375, 3), 0.438);
        // not ties in binary: 0.00015 is a little below, 0.0015 a little above
        assert_eq!(py_round(0.00015, 4), 0.0001);
        assert_eq!(py_round(0.0015, 3), 0.002);
        assert_eq!(py_round(0.12345, 4), 0.1235);
        assert_eq!(py_round(0.99995, 4), 1.0);
        assert_eq!(py_round(5e-324, 4), 0.0);
        let negative_zero = py_round(-0.00004, 4);
        assert!(negative_zero == 0.0 && negative_zero.is_sign_negative());
    }

    #[test]
    fn the_lexicons_are_read_whole() {
        let analyzer = &*ANALYZER;
        // 7,520 lines; later lines for the same token replace earlier ones
        assert_eq!(analyzer.lexicon.len(), 7506);
        assert_eq!(analyzer.lexicon.get("no"), Some(&-1.2));
        assert_eq!(analyzer.lexicon.get("good"), Some(&1.9));
        assert_eq!(analyzer.lexicon.get("}:-)"), Some(&0.3));
        // 3,570 emojis, of which 1,212 are one character
        assert_eq!(analyzer.emojis.len(), 1212);
        assert_eq!(analyzer.emojis.get(&'😀'), Some(&"grinning face"));
        assert_eq!(analyzer.emojis.get(&'©'), Some(&"copyright"));
    }
}
