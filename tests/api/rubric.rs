use std::collections::HashSet;

use iqs::proto::rubric as pb;
use prost::Message;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    AppOptions, Backend, criterion, draft, new_rubric, published_rubric, spawn_app_on,
    spawn_app_with, violated_fields,
};

async fn create_update_publish_and_read_a_rubric(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let created = client
        .create_rubric(new_rubric(
            "Email",
            draft(vec![criterion("accuracy", 3, 0, 4)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.state, pb::RubricState::Active as i32);
    assert_eq!(created.latest_version, 0);
    assert_eq!(created.draft.as_ref().unwrap().pass_threshold, Some(80.0));
    assert!(Uuid::parse_str(&created.id).unwrap().get_version_num() == 7);

    let updated = client
        .update_rubric_draft(pb::UpdateRubricDraftRequest {
            id: created.id.clone(),
            draft: Some(pb::RubricDraft {
                criteria: vec![criterion("accuracy", 3, 0, 4), criterion("tone", 1, 1, 5)],
                pass_threshold: Some(75.0),
                auto_score: false,
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.draft.as_ref().unwrap().criteria.len(), 2);

    let version = client
        .publish_rubric(pb::PublishRubricRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.version, 1);
    assert_eq!(version.pass_threshold, 75.0);
    assert_eq!(version.criteria, updated.draft.unwrap().criteria);

    let read = client
        .get_rubric(pb::GetRubricRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.latest_version, 1);
    assert_eq!(read.create_time, created.create_time);
}

async fn version_1_reads_back_byte_identical_after_version_2_is_published(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let (rubric, published) = published_rubric(&mut client).await;
    let get_v1 = || pb::GetRubricVersionRequest {
        rubric_id: rubric.id.clone(),
        version: 1,
    };
    let before = client
        .get_rubric_version(get_v1())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, published);

    client
        .update_rubric_draft(pb::UpdateRubricDraftRequest {
            id: rubric.id.clone(),
            draft: Some(draft(vec![criterion("greeting", 5, 0, 1)])),
            update_mask: None,
        })
        .await
        .unwrap();
    let v2 = client
        .publish_rubric(pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);

    let after = client
        .get_rubric_version(get_v1())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.encode_to_vec(), after.encode_to_vec());
    let latest = client
        .get_rubric_version(pb::GetRubricVersionRequest {
            rubric_id: rubric.id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest, v2, "version 0 is the newest published version");
}

async fn published_versions_cannot_be_changed_even_in_the_database(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let (rubric, _) = published_rubric(&mut app.rubrics()).await;
    let id = Uuid::parse_str(&rubric.id).unwrap();
    let update = app
        .db
        .execute_with(
            "UPDATE rubric.rubric_versions SET pass_threshold = 1 WHERE rubric_id = $1",
            id,
        )
        .await;
    assert!(update.is_err());
    let delete = app
        .db
        .execute_with(
            "DELETE FROM rubric.rubric_versions WHERE rubric_id = $1",
            id,
        )
        .await;
    assert!(delete.is_err());
}

async fn a_draft_with_five_faults_is_refused_naming_all_five(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let request = pb::CreateRubricRequest {
        request_id: String::new(),
        rubric: Some(pb::Rubric {
            display_name: "Broken".into(),
            draft: Some(pb::RubricDraft {
                criteria: vec![
                    criterion("greeting", 1, 0, 1),
                    criterion("greeting", 1, 0, 1),
                    criterion("Bad Key!", 1, 0, 1),
                    criterion("heavy", 101, 0, 1),
                    criterion("empty_scale", 1, 3, 3),
                ],
                pass_threshold: Some(120.0),
                auto_score: false,
            }),
            ..Default::default()
        }),
    };
    let status = client.create_rubric(request).await.unwrap_err();
    let fields: HashSet<_> = violated_fields(&status).into_iter().collect();
    let expected: HashSet<_> = [
        "rubric.draft.criteria[1].key",
        "rubric.draft.criteria[2].key",
        "rubric.draft.criteria[3].weight",
        "rubric.draft.criteria[4].scale_max",
        "rubric.draft.pass_threshold",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(fields, expected);
    let stored = app.count("rubric.rubrics").await;
    assert_eq!(stored, 0);
}

async fn update_with_invalid_draft_names_fields_and_changes_nothing(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let (rubric, _) = published_rubric(&mut client).await;
    let mut labelled = criterion("tone", 1, 1, 3);
    labelled.level_labels = vec!["poor".into(), "good".into()];
    let status = client
        .update_rubric_draft(pb::UpdateRubricDraftRequest {
            id: rubric.id.clone(),
            draft: Some(draft(vec![labelled, criterion("", 1, 0, 1)])),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["draft.criteria[0].level_labels", "draft.criteria[1].key"]
    );
    let read = client
        .get_rubric(pb::GetRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.draft, rubric.draft);
}

async fn a_rubric_without_a_display_name_is_refused(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let status = app
        .rubrics()
        .create_rubric(new_rubric("", draft(vec![])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["rubric.display_name"]);
    let status = app
        .rubrics()
        .create_rubric(pb::CreateRubricRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["rubric"]);
}

async fn update_mask_replaces_only_the_named_part_of_the_draft(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let (rubric, _) = published_rubric(&mut client).await;
    let updated = client
        .update_rubric_draft(pb::UpdateRubricDraftRequest {
            id: rubric.id.clone(),
            draft: Some(pb::RubricDraft {
                criteria: vec![],
                pass_threshold: Some(90.0),
                auto_score: false,
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["pass_threshold".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let updated_draft = updated.draft.unwrap();
    assert_eq!(updated_draft.pass_threshold, Some(90.0));
    assert_eq!(updated_draft.criteria, rubric.draft.unwrap().criteria);
}

async fn unknown_ids_give_not_found_and_malformed_ids_name_the_field(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let unknown = Uuid::now_v7().to_string();
    let codes = [
        client
            .get_rubric(pb::GetRubricRequest {
                id: unknown.clone(),
            })
            .await
            .unwrap_err()
            .code(),
        client
            .update_rubric_draft(pb::UpdateRubricDraftRequest {
                id: unknown.clone(),
                draft: Some(draft(vec![])),
                update_mask: None,
            })
            .await
            .unwrap_err()
            .code(),
        client
            .publish_rubric(pb::PublishRubricRequest {
                id: unknown.clone(),
            })
            .await
            .unwrap_err()
            .code(),
        client
            .get_rubric_version(pb::GetRubricVersionRequest {
                rubric_id: unknown.clone(),
                version: 0,
            })
            .await
            .unwrap_err()
            .code(),
        client
            .list_rubric_versions(pb::ListRubricVersionsRequest {
                rubric_id: unknown.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        client
            .archive_rubric(pb::ArchiveRubricRequest {
                id: unknown.clone(),
            })
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::NotFound; 6]);
    let status = client
        .get_rubric(pb::GetRubricRequest {
            id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);
}

async fn version_0_is_the_latest_and_missing_versions_are_not_found(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let unpublished = client
        .create_rubric(new_rubric("Voice", draft(vec![criterion("hold", 1, 0, 1)])))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .get_rubric_version(pb::GetRubricVersionRequest {
            rubric_id: unpublished.id.clone(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let (rubric, v1) = published_rubric(&mut client).await;
    let latest = client
        .get_rubric_version(pb::GetRubricVersionRequest {
            rubric_id: rubric.id.clone(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest, v1);
    let status = client
        .get_rubric_version(pb::GetRubricVersionRequest {
            rubric_id: rubric.id.clone(),
            version: 99,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn publishing_needs_a_criterion_with_positive_weight(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let rubric = client
        .create_rubric(new_rubric(
            "Notes only",
            draft(vec![criterion("note", 0, 0, 1)]),
        ))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .publish_rubric(pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("weight > 0"),
        "{}",
        status.message()
    );
}

async fn publishing_an_unchanged_draft_again_returns_the_latest_version(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let (rubric, v1) = published_rubric(&mut client).await;
    let again = client
        .publish_rubric(pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, v1);
    let versions = client
        .list_rubric_versions(pb::ListRubricVersionsRequest {
            rubric_id: rubric.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.rubric_versions.len(), 1);
}

async fn archived_rubrics_refuse_changes_but_keep_versions_readable(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let (rubric, v1) = published_rubric(&mut client).await;
    let archived = client
        .archive_rubric(pb::ArchiveRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.state, pb::RubricState::Archived as i32);
    let again = client
        .archive_rubric(pb::ArchiveRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, archived);

    let update = client
        .update_rubric_draft(pb::UpdateRubricDraftRequest {
            id: rubric.id.clone(),
            draft: Some(draft(vec![criterion("x", 1, 0, 1)])),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::FailedPrecondition);
    let publish = client
        .publish_rubric(pb::PublishRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(publish.code(), Code::FailedPrecondition);

    let read = client
        .get_rubric_version(pb::GetRubricVersionRequest {
            rubric_id: rubric.id.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, v1);

    let listed = |include_archived| pb::ListRubricsRequest {
        include_archived,
        ..Default::default()
    };
    let active = client
        .list_rubrics(listed(false))
        .await
        .unwrap()
        .into_inner();
    assert!(active.rubrics.is_empty());
    let all = client
        .list_rubrics(listed(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.rubrics, vec![archived]);
}

async fn create_with_the_same_request_id_and_content_returns_the_same_rubric(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let mut request = new_rubric("Chat", draft(vec![criterion("greeting", 1, 0, 1)]));
    request.request_id = Uuid::now_v7().to_string();
    let first = client
        .create_rubric(request.clone())
        .await
        .unwrap()
        .into_inner();
    let retry = client
        .create_rubric(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry);

    request.rubric.as_mut().unwrap().display_name = "Something else".into();
    let status = client.create_rubric(request).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
}

async fn concurrent_creates_with_one_request_id_store_one_rubric(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut request = new_rubric("Chat", draft(vec![criterion("greeting", 1, 0, 1)]));
    request.request_id = Uuid::now_v7().to_string();
    let calls = (0..20).map(|_| {
        let mut client = app.rubrics();
        let request = request.clone();
        tokio::spawn(async move { client.create_rubric(request).await.map(|r| r.into_inner()) })
    });
    let mut ids = HashSet::new();
    for call in calls {
        ids.insert(call.await.unwrap().expect("every retry succeeds").id);
    }
    assert_eq!(ids.len(), 1);
    let stored = app.count("rubric.rubrics").await;
    assert_eq!(stored, 1);
}

async fn page_tokens_survive_inserts_between_pages(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let mut created = Vec::new();
    for n in 0..5 {
        let rubric = client
            .create_rubric(new_rubric(&format!("R{n}"), draft(vec![])))
            .await
            .unwrap()
            .into_inner();
        created.push(rubric.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_rubrics(pb::ListRubricsRequest {
                page_size: 2,
                page_token: token.clone(),
                include_archived: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.rubrics.into_iter().map(|r| r.id));
        if pages == 1 {
            // Rows inserted after the first page appear at the end, never twice.
            client
                .create_rubric(new_rubric("Late", draft(vec![])))
                .await
                .unwrap();
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(&seen[..5], created.as_slice());
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6);
}

async fn a_page_token_is_refused_with_other_filters_or_when_forged(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    for n in 0..3 {
        client
            .create_rubric(new_rubric(&format!("R{n}"), draft(vec![])))
            .await
            .unwrap();
    }
    let page = client
        .list_rubrics(pb::ListRubricsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_rubrics(pb::ListRubricsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            include_archived: true,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = client
        .list_rubrics(pb::ListRubricsRequest {
            page_size: -1,
            page_token: "garbage".into(),
            include_archived: false,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
}

async fn versions_are_listed_newest_first_across_pages(backend: Backend) {
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let (rubric, _) = published_rubric(&mut client).await;
    for weight in 2..=4 {
        client
            .update_rubric_draft(pb::UpdateRubricDraftRequest {
                id: rubric.id.clone(),
                draft: Some(draft(vec![criterion("greeting", weight, 0, 1)])),
                update_mask: None,
            })
            .await
            .unwrap();
        client
            .publish_rubric(pb::PublishRubricRequest {
                id: rubric.id.clone(),
            })
            .await
            .unwrap();
    }
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_rubric_versions(pb::ListRubricVersionsRequest {
                rubric_id: rubric.id.clone(),
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        versions.extend(page.rubric_versions.into_iter().map(|v| v.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(versions, [4, 3, 2, 1]);
}

async fn a_tenant_never_sees_another_tenants_rubrics(backend: Backend) {
    let first = spawn_app_on(backend).await;
    // Another app on the same database serves a tenant of its own.
    let second = spawn_app_with(AppOptions {
        backend,
        database_url: Some(first.database_url.clone()),
        ..AppOptions::default()
    })
    .await;
    assert_ne!(first.tenant, second.tenant);
    let (rubric, _) = published_rubric(&mut first.rubrics()).await;
    let mut other = second.rubrics();
    let status = other
        .get_rubric(pb::GetRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = other
        .get_rubric_version(pb::GetRubricVersionRequest {
            rubric_id: rubric.id.clone(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = other
        .archive_rubric(pb::ArchiveRubricRequest {
            id: rubric.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let listed = other
        .list_rubrics(pb::ListRubricsRequest {
            include_archived: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.rubrics.is_empty());
}

crate::on_every_store! {
    auto_rules_are_published_with_the_version_and_every_bad_one_is_named,
    create_update_publish_and_read_a_rubric,
    version_1_reads_back_byte_identical_after_version_2_is_published,
    published_versions_cannot_be_changed_even_in_the_database,
    a_draft_with_five_faults_is_refused_naming_all_five,
    update_with_invalid_draft_names_fields_and_changes_nothing,
    a_rubric_without_a_display_name_is_refused,
    update_mask_replaces_only_the_named_part_of_the_draft,
    unknown_ids_give_not_found_and_malformed_ids_name_the_field,
    version_0_is_the_latest_and_missing_versions_are_not_found,
    publishing_needs_a_criterion_with_positive_weight,
    publishing_an_unchanged_draft_again_returns_the_latest_version,
    archived_rubrics_refuse_changes_but_keep_versions_readable,
    create_with_the_same_request_id_and_content_returns_the_same_rubric,
    concurrent_creates_with_one_request_id_store_one_rubric,
    page_tokens_survive_inserts_between_pages,
    a_page_token_is_refused_with_other_filters_or_when_forged,
    versions_are_listed_newest_first_across_pages,
    a_tenant_never_sees_another_tenants_rubrics,
}

fn with_rule(mut criterion: pb::Criterion, rule: pb::auto_rule::Rule) -> pb::Criterion {
    criterion.allow_not_applicable = true;
    criterion.auto = Some(pb::AutoRule { rule: Some(rule) });
    criterion
}

async fn auto_rules_are_published_with_the_version_and_every_bad_one_is_named(backend: Backend) {
    use pb::auto_rule::Rule;
    let app = spawn_app_on(backend).await;
    let mut client = app.rubrics();
    let greeting = Rule::Phrase(pb::PhraseRule {
        phrases: vec!["Thank you for contacting".into(), "hello".into()],
        scope: pb::AutoScope::FirstAgentMessages as i32,
        message_count: 1,
        expect: pb::AutoExpect::Present as i32,
    });
    let criteria = vec![
        with_rule(criterion("greeting", 1, 0, 1), greeting),
        with_rule(
            criterion("response", 2, 1, 5),
            Rule::ResponseTime(pb::ResponseTimeRule {
                target_seconds: 60,
                limit_seconds: 300,
            }),
        ),
        with_rule(
            criterion("mood", 1, 1, 5),
            Rule::SentimentShift(pb::SentimentShiftRule {}),
        ),
        with_rule(
            criterion("pci", 0, 0, 1),
            Rule::CardNumber(pb::CardNumberRule {}),
        ),
        criterion("empathy", 2, 1, 4),
    ];
    let created = client
        .create_rubric(new_rubric("AutoQA chat", draft(criteria.clone())))
        .await
        .expect("a rubric with rules")
        .into_inner();
    let version = client
        .publish_rubric(pb::PublishRubricRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected = criteria;
    for criterion in &mut expected {
        criterion.critical = pb::CriticalScope::None as i32; // the server names the default
    }
    assert_eq!(
        version.criteria, expected,
        "rules round-trip through publishing"
    );

    // Each fault named: a rule on a criterion without N/A, no phrase, a phrase of spaces,
    // limit not above target, no rule in the message, an address that is not one.
    let mut no_na = with_rule(
        criterion("a", 1, 0, 1),
        Rule::CardNumber(pb::CardNumberRule {}),
    );
    no_na.allow_not_applicable = false;
    let bad = vec![
        no_na,
        with_rule(
            criterion("b", 1, 0, 1),
            Rule::Phrase(pb::PhraseRule {
                phrases: vec![],
                ..Default::default()
            }),
        ),
        with_rule(
            criterion("c", 1, 0, 1),
            Rule::Phrase(pb::PhraseRule {
                phrases: vec!["ok".into(), "   ".into()],
                ..Default::default()
            }),
        ),
        with_rule(
            criterion("d", 1, 1, 5),
            Rule::ResponseTime(pb::ResponseTimeRule {
                target_seconds: 300,
                limit_seconds: 300,
            }),
        ),
        {
            let mut empty = criterion("e", 1, 0, 1);
            empty.allow_not_applicable = true;
            empty.auto = Some(pb::AutoRule { rule: None });
            empty
        },
        with_rule(
            criterion("f", 1, 0, 1),
            Rule::External(pb::ExternalRule {
                endpoint: "ftp://scorer".into(),
            }),
        ),
    ];
    let err = client
        .create_rubric(new_rubric("Bad rules", draft(bad)))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "rubric.draft.criteria[0].auto",
            "rubric.draft.criteria[1].auto.phrase.phrases",
            "rubric.draft.criteria[2].auto.phrase.phrases[1]",
            "rubric.draft.criteria[3].auto.response_time.limit_seconds",
            "rubric.draft.criteria[4].auto",
            "rubric.draft.criteria[5].auto.external.endpoint",
        ]
    );
}
