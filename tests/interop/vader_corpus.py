"""Checks the VADER compound score of `iqs autoqa sentiment` against an independent
reference: the vaderSentiment 3.3.2 package from PyPI.

A deterministic corpus (a fixed seed) of random texts built to reach every rule of the
package (lexicon words, boosters and dampeners, negations, "no", "least", "never so",
"without doubt", "but", "kind of", special idioms, ! and ? emphasis, ALL CAPS among
lower-case words, emoticons, emojis, numbers, Unicode case and whitespace), plus the
package's own example sentences, goes to the binary one text a line on stdin; it prints
one compound score a line. Each must equal the package's `polarity_scores(text)['compound']`
(which is rounded to 4 decimals) within 1e-3; how many are exactly equal after rounding to
4 decimals is reported. Exits non-zero listing the first 20 differences otherwise.

Usage: vader_corpus.py PATH_TO_IQS_BINARY
"""
import importlib.metadata
import os
import random
import subprocess
import sys

from vaderSentiment import vaderSentiment as vader

SEED = 20140601
RANDOM_TEXTS = 4000
TOLERANCE = 1e-3

PACKAGE_DIR = os.path.dirname(vader.__file__)

# The package's examples (its __main__ demo): sentences, tricky sentences, the paragraph
# and its sentences, image tags, and the non-English sentences (untranslated).
EXAMPLES = [
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "Most automated sentiment analysis tools are shit.",
    "With VADER, sentiment analysis is the shit!",
    "Other sentiment analysis tools can be quite bad.",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "Without a doubt, excellent idea.",
    "Roger Dodger is one of the most compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Not such a badass after all.",
    "Without a doubt, an excellent idea.",
    "It was one of the worst movies I've seen, despite good reviews. Unbelievably bad acting!! "
    "Poor direction. VERY poor production. The movie was bad. Very bad movie. VERY BAD movie!",
    "It was one of the worst movies I've seen, despite good reviews.",
    "Unbelievably bad acting!!",
    "Poor direction.",
    "VERY poor production.",
    "The movie was bad.",
    "Very bad movie.",
    "VERY BAD movie!",
    "balloons", "cake", "candles", "happy birthday", "friends", "laughing", "smiling", "party",
    "riot", "fire", "fight", "blood", "mob", "war", "police", "tear gas",
    "I'm surprised to see just how amazingly helpful VADER is!",
    "Je suis surpris de voir comment VADER est incroyablement utile !",
    "Ich bin überrascht zu sehen, nur wie erstaunlich nützlich VADER!",
    "Me sorprende ver sólo cómo increíblemente útil VADER!",
    "Sono sorpreso di vedere solo come incredibilmente utile VADER è!",
    "Я удивлен увидеть, как раз как удивительно полезно ВЕЙДЕРА!",
    "私はちょうどどのように驚くほど役に立つベイダーを見て驚いています!",
    "أنا مندهش لرؤية فقط كيف مثير للدهشة فيدر فائدة!",
    "我很惊讶地看到VADER是如此有用!",
    "我很驚訝地看到VADER是如此有用!",
]

# Corners of the rules and of Python's string semantics.
EDGE_CASES = [
    ":)", ":D", ":-Þ", "!!!", "???", "?", "no", "No", "NO", "no no", "no good", "NO good",
    "good no", "no good or bad", "no good nor bad", "kind of", "Kind of good", "kind",
    "but", "BUT", "but good", "good but", "good good but good good", "bad bad but bad bad",
    "😁", "😁😁😁", "a😁b", "good😁", "😁good", "🔛", "🆙 great", "🇬🇧 great", "👍🏽 ok",
    "©", "® good", "least good", "the least good", "at least good", "very least good",
    "never so good", "never this good", "so good", "this good", "without doubt good",
    "without a doubt good", "the shit", "is the shit", "it is the bomb", "bad ass movie",
    "yeah right", "the kiss of death", "a cake to die for", "a beating heart",
    "cut the mustard", "in the red", "under the weather today",
    "GOOD ʕ•ᴥ•ʔ", "GREATʕ bad", "GOODʕ GREAT", "Ꟛ GREAT", "GREATꟍ GREAT", "GREATǅ GREAT",
    "GREATᾈ GREAT", "GOOD\U00010D50 GREAT", "GOOD\U00010D70 GREAT", "GOOD\U0001E030 GREAT", "ꟋGOOD bad", "Ꟑ good", "ǅ GOOD bad", "ΣΟΦΟΣ GOOD bad",
    "GOOD\x1cbad", "GOOD\x1fgreat\x1dnice", "good\xa0bad", "GOOD\u2003bad\u3000nice",
    "good\tbad\x0bnice\x0cok", "great\x85HAPPY", "sad\u2028GOOD", "\x1c good \x1c",
    "I LOVE IT", "I love IT", "1 2 3 good", "A1 good", "GOOD 100%", "x", "a b c",
    "isn't good", "mayn't good", "wouldn't've good", "uh-uh good", "UH-UH GOOD bad",
    "very very very good", "VERY good", "VERY bad", "VERY GOOD bad", "kinda GOOD",
    "KINDA good bad", "sort of good", "sorta bad", "just enough good", "the just enough good",
]


def lexicon_tokens():
    with open(os.path.join(PACKAGE_DIR, "vader_lexicon.txt"), encoding="utf-8") as f:
        return [line.strip().split("\t")[0] for line in f.read().split("\n") if line.strip()]


def emoji_keys():
    with open(os.path.join(PACKAGE_DIR, "emoji_utf8_lexicon.txt"), encoding="utf-8") as f:
        return [line.strip().split("\t")[0] for line in f.read().split("\n") if line.strip()]


LEXICON = lexicon_tokens()
WORDS = [w for w in LEXICON if any(c.isalpha() for c in w)]
EMOTICONS = [w for w in LEXICON if not any(c.isalpha() for c in w)] + [":D", ":P", "XD", "<3"]
EMOJIS = emoji_keys()
BOOSTERS = list(vader.BOOSTER_DICT)
NEGATIONS = list(vader.NEGATE) + ["isn't", "mayn't", "wouldn't've", "NOT", "Never"]
PHRASES = list(vader.SPECIAL_CASES) + list(vader.SENTIMENT_LADEN_IDIOMS)
RULE_WORDS = ["no", "never", "so", "this", "without", "doubt", "least", "at", "very", "but",
              "kind", "of", "sort", "or", "nor", "the", "bomb", "shit", "right", "yeah"]
FILLER = ["the", "a", "it", "was", "is", "movie", "service", "agent", "i", "you", "we", "and",
          "to", "for", "my", "order", "call", "today", "this", "that", "x", "I", "u"]
NUMBERS = ["0", "1", "2", "42", "3.5", "100%", "$20", "2nd", "1,000", "10/10", "24/7"]
UNICODE = ["ʕ•ᴥ•ʔ", "ÉNORME", "café", "naïve", "ΣΟΦΟΣ", "ǅungla", "Dž", "straße", "İstanbul",
           "K", "Ꟑ", "ꟋOK", "GOODʕ", "ʕ", "Ⅻ", "ⓐ", "Ⓖ", "ᾈ", "ǲ", "ﬀ", "𝐀𝐁", "ÅNGSTRÖM"]
# Letters whose case Python 3.11 (Unicode 14.0) sees differently from newer Unicode, or
# titlecase, or uncased symbols: glued to words they decide `isupper()`.
CASE_CORNERS = ["ʕ", "ǅ", "ᾈ", "Ꟛ", "ꟍ", "Ꟑ", "\U00010D50", "\U00010D70", "\U0001E030", "Ⅻ",
                "ⓐ", "Ⓖ", "ﬀ", "ß", "1", "_"]
SPACES = [" "] * 20 + ["  ", "\t", "\xa0", "\u2003", "\x1c", "\x1f", "\u3000", "\x0b", "\x0c",
                       "\x85", "\u2028", " \t "]
PREFIXES = [""] * 12 + ['"', "(", "'", "*", "#", "@", "...", "-"]
SUFFIXES = [""] * 14 + [",", ".", "!", "!!", "!!!!!", "?", "??", "???", "????", "?!", "...",
                        ")", "'s", ":", ";", '"', ".)", "!?"]
SEPARATORS = [". ", "! ", "? ", " ", "... ", "!! ", ", ", "; "]


def cased(rng, token):
    r = rng.random()
    if r < 0.6:
        return token
    if r < 0.72:
        return token[:1].upper() + token[1:]
    if r < 0.9:
        return token.upper()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in token)


def token(rng):
    r = rng.random()
    if r < 0.30:
        word = cased(rng, rng.choice(WORDS))
    elif r < 0.50:
        word = cased(rng, rng.choice(FILLER))
    elif r < 0.58:
        word = cased(rng, rng.choice(BOOSTERS))
    elif r < 0.66:
        word = cased(rng, rng.choice(NEGATIONS))
    elif r < 0.78:
        word = cased(rng, rng.choice(RULE_WORDS))
    elif r < 0.83:
        return rng.choice(EMOTICONS)
    elif r < 0.89:
        return rng.choice(EMOJIS)
    elif r < 0.92:
        return rng.choice(NUMBERS)
    elif r < 0.96:
        word = cased(rng, rng.choice(PHRASES))
    else:
        word = rng.choice(UNICODE)
    if rng.random() < 0.04:
        corner = rng.choice(CASE_CORNERS)
        word = word + corner if rng.random() < 0.5 else corner + word
    return rng.choice(PREFIXES) + word + rng.choice(SUFFIXES)


def template(rng):
    """A sentence shaped for one rule, with random lexicon words in it."""
    w = lambda: cased(rng, rng.choice(WORDS))
    shapes = [
        lambda: f"{rng.choice(NEGATIONS)} {rng.choice(BOOSTERS)} {w()}",
        lambda: f"{rng.choice(['never so', 'never this', 'Never so', 'NEVER THIS'])} {w()}",
        lambda: f"{rng.choice(['without a doubt', 'without doubt', 'Without any doubt'])} {w()}",
        lambda: f"{rng.choice(['at least', 'the very least', 'least', 'the least', 'a least'])} {w()}",
        lambda: f"it is {rng.choice(['kind of', 'sort of', 'kinda', 'Kind Of', 'just enough'])} {w()}",
        lambda: f"no {w()}",
        lambda: f"no {w()} {rng.choice(['or', 'nor'])} {w()}",
        lambda: f"{w()} {w()} but {w()} {w()}",
        lambda: f"{w()} {w()} {w()} BUT {w()}",
        lambda: " ".join([w()] * rng.randint(2, 4) + ["but"] + [w()] * rng.randint(1, 3)),
        lambda: f"{rng.choice(FILLER)} {rng.choice(PHRASES)} {rng.choice(FILLER)} {w()}",
        lambda: f"{w().upper()} {w()} {rng.choice(FILLER)}{rng.choice(SUFFIXES)}",
        lambda: f"{rng.choice(BOOSTERS).upper()} {w()} {w()}",
        lambda: f"{w()}{rng.choice(EMOJIS)}{w()} {rng.choice(EMOJIS)}",
        lambda: f"{w()} {'!' * rng.randint(1, 6)}{'?' * rng.randint(0, 5)}",
    ]
    return rng.choice(shapes)()


def sentence(rng):
    if rng.random() < 0.3:
        return template(rng)
    n = rng.randint(1, 15)
    text = ""
    for i in range(n):
        t = token(rng)
        if i > 0:
            # an emoji sometimes touches its neighbour, which the package treats apart
            text += "" if (rng.random() < 0.1 and t in EMOJIS) else rng.choice(SPACES)
        text += t
    return text


def random_text(rng):
    text = rng.choice(SEPARATORS).join(sentence(rng) for _ in range(rng.choice([1, 1, 1, 2, 3, 4])))
    r = rng.random()
    if r < 0.05:
        text = text.upper()
    elif r < 0.08:
        text = text.lower()
    if rng.random() < 0.05:
        text = rng.choice(SPACES) + text + rng.choice(SPACES)
    return text


def corpus():
    rng = random.Random(SEED)
    texts = EXAMPLES + EDGE_CASES + [random_text(rng) for _ in range(RANDOM_TEXTS)]
    seen = set()
    kept = []
    for text in texts:
        # one text a line: no line breaks; nothing to score on a blank line
        if "\n" in text or "\r" in text or not text.strip() or text in seen:
            continue
        seen.add(text)
        kept.append(text)
    return kept


def main():
    binary = sys.argv[1]
    # The port follows the package under Python 3.11: its case tables (Unicode 14.0) and
    # its plain float sum() (3.12's compensated sum turns valences that cancel exactly
    # into a tiny non-zero sum, which then takes the ! and ? emphasis).
    try:
        version = importlib.metadata.version("vaderSentiment")
    except importlib.metadata.PackageNotFoundError:
        version = "(unknown version)"
    if version != "3.3.2" or sys.version_info[:2] != (3, 11):
        sys.exit(f"interop: the VADER port follows vaderSentiment 3.3.2 under Python 3.11, "
                 f"not vaderSentiment {version} under Python {sys.version.split()[0]}")
    texts = corpus()
    analyzer = vader.SentimentIntensityAnalyzer()
    expected = [analyzer.polarity_scores(text)["compound"] for text in texts]

    stdin = ("\n".join(texts) + "\n").encode("utf-8")
    run = subprocess.run([binary, "autoqa", "sentiment"], input=stdin, capture_output=True,
                         check=True)
    lines = run.stdout.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(texts):
        sys.exit(f"interop: {binary} autoqa sentiment printed {len(lines)} lines for "
                 f"{len(texts)} texts")

    differences = []
    exact = 0
    for text, want, line in zip(texts, expected, lines):
        got = float(line)
        if abs(got - want) > TOLERANCE:
            differences.append((text, want, got))
        elif round(got, 4) == want:
            exact += 1
    if differences:
        print(f"interop: VADER compound differs from the vaderSentiment package's on "
              f"{len(differences)} of {len(texts)} texts (first 20):", file=sys.stderr)
        for text, want, got in differences[:20]:
            print(f"  {text!r}: package {want}, binary {got}", file=sys.stderr)
        sys.exit(1)
    print(f"interop: VADER compound of {len(texts)} texts equals the vaderSentiment package's "
          f"within 1e-3 ({exact} exactly)")


if __name__ == "__main__":
    main()
