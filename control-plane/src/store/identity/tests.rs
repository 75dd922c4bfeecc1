#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use crate::store::{Mode, Mutation, StoreOptions};

fn spec(name: &str) -> ProviderSpec {
    ProviderSpec::for_tests(name, &format!("https://{name}.example"))
}

fn put(name: &str, jwks: &str, create: bool) -> Mutation {
    Mutation::Identity(IdentityMutation::PutProvider {
        record: ProviderRecord {
            spec: spec(name),
            endpoints: Endpoints::default(),
            jwks_json: jwks.into(),
            keys_revision: 0,
        },
        create,
    })
}

fn rule(name: &str, idp: &str) -> Mutation {
    Mutation::Identity(IdentityMutation::CreateRule(RuleRecord {
        name: name.into(),
        idp: idp.into(),
        conditions: vec![RuleCondition::Group("eng".into())],
        allowed: vec!["github".into()],
    }))
}

fn revoke(idp: &str, subject: &str) -> Mutation {
    Mutation::Identity(IdentityMutation::Revoke {
        idp: idp.into(),
        subject: subject.into(),
    })
}

async fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreOptions::new(dir, Mode::Enterprise))
        .await
        .unwrap()
}

#[tokio::test]
async fn keys_revision_follows_key_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let created = store
        .apply(put("corp", "{\"keys\":[1]}", true))
        .await
        .unwrap();
    assert_eq!(
        store
            .identity_provider("corp")
            .unwrap()
            .unwrap()
            .keys_revision,
        created
    );
    // Same keys, other settings: the keys' revision stays.
    store
        .apply(put("corp", "{\"keys\":[1]}", false))
        .await
        .unwrap();
    assert_eq!(
        store
            .identity_provider("corp")
            .unwrap()
            .unwrap()
            .keys_revision,
        created
    );
    let rotated = store
        .apply(Mutation::Identity(IdentityMutation::SetKeys {
            spec: spec("corp"),
            endpoints: Endpoints::default(),
            jwks_json: "{\"keys\":[2]}".into(),
        }))
        .await
        .unwrap();
    let stored = store.identity_provider("corp").unwrap().unwrap();
    assert_eq!(
        (stored.keys_revision, stored.jwks_json.as_str()),
        (rotated, "{\"keys\":[2]}")
    );
    // A refresh that read an older spec loses, and takes no revision.
    let mut old = spec("corp");
    old.leeway_ms = 1;
    let before = store.revision();
    assert!(matches!(
        store
            .apply(Mutation::Identity(IdentityMutation::SetKeys {
                spec: old,
                endpoints: Endpoints::default(),
                jwks_json: "{}".into(),
            }))
            .await,
        Err(StoreError::Superseded { .. })
    ));
    assert!(matches!(
        store.apply(put("corp", "{}", true)).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.apply(put("nope", "{}", false)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.revision(), before);
}

#[tokio::test]
async fn deleting_a_provider_takes_its_rules_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.apply(put("corp", "{}", true)).await.unwrap();
    store.apply(put("other", "{}", true)).await.unwrap();
    store.apply(rule("eng", "corp")).await.unwrap();
    store.apply(rule("ops", "other")).await.unwrap();
    assert!(matches!(
        store.apply(rule("x", "missing")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.apply(rule("eng", "other")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    store.apply(revoke("corp", "u1")).await.unwrap();
    // Revoking twice keeps one revocation.
    store.apply(revoke("corp", "u1")).await.unwrap();
    store.apply(revoke("other", "u1")).await.unwrap();
    assert_eq!(store.revocations().unwrap().len(), 2);
    assert!(store.is_revoked("corp", "u1").unwrap());

    let deleted = store
        .apply(Mutation::Identity(IdentityMutation::DeleteProvider {
            name: "corp".into(),
        }))
        .await
        .unwrap();
    let names: Vec<String> = store
        .access_rules()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["ops"]);
    assert!(!store.is_revoked("corp", "u1").unwrap());
    assert!(store.is_revoked("other", "u1").unwrap());
    // The change log carries the delete (one change: data planes drop rules and revocations).
    let since = store.changes_since(deleted - 1).unwrap().unwrap();
    assert!(matches!(&since[0].change, Change::ProviderDeleted { name } if name == "corp"));

    // A provider made again under the same name starts clean.
    store.apply(put("corp", "{}", true)).await.unwrap();
    store.apply(rule("eng", "corp")).await.unwrap();
    assert_eq!(store.access_rules().unwrap().len(), 2);
}

#[tokio::test]
async fn rules_update_delete_and_unrevoke_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        store
            .apply(put("corp", "{\"keys\":[]}", true))
            .await
            .unwrap();
        store.apply(rule("eng", "corp")).await.unwrap();
        store.apply(rule("gone", "corp")).await.unwrap();
        store
            .apply(Mutation::Identity(IdentityMutation::UpdateRule {
                name: "eng".into(),
                conditions: None,
                allowed: Some(vec!["jira".into()]),
            }))
            .await
            .unwrap();
        store
            .apply(Mutation::Identity(IdentityMutation::DeleteRule {
                name: "gone".into(),
            }))
            .await
            .unwrap();
        store.apply(revoke("corp", "u1")).await.unwrap();
        store.apply(revoke("corp", "u2")).await.unwrap();
        store
            .apply(Mutation::Identity(IdentityMutation::Unrevoke {
                idp: "corp".into(),
                subject: "u2".into(),
            }))
            .await
            .unwrap();
        assert!(matches!(
            store
                .apply(Mutation::Identity(IdentityMutation::Unrevoke {
                    idp: "corp".into(),
                    subject: "u2".into(),
                }))
                .await,
            Err(StoreError::NotFound { .. })
        ));
        store.close().await;
    }
    let store = open(dir.path()).await;
    let rules = store.access_rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].allowed, vec!["jira"]);
    assert_eq!(
        rules[0].conditions,
        vec![RuleCondition::Group("eng".into())]
    );
    let revoked: Vec<String> = store
        .revocations()
        .unwrap()
        .into_iter()
        .map(|r| r.subject)
        .collect();
    assert_eq!(revoked, vec!["u1"]);
    // Deleting the provider now drops exactly what is left (the index followed every change).
    store
        .apply(Mutation::Identity(IdentityMutation::DeleteProvider {
            name: "corp".into(),
        }))
        .await
        .unwrap();
    assert!(store.access_rules().unwrap().is_empty());
    assert!(store.revocations().unwrap().is_empty());
    assert!(
        store.inner.trees.identity.iter().next().is_none(),
        "nothing of the provider is left behind"
    );
}

#[tokio::test]
async fn revocations_stay_out_of_the_index_and_old_indexes_still_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.apply(put("corp", "{}", true)).await.unwrap();
    store.apply(put("corp2", "{}", true)).await.unwrap();
    store.apply(rule("eng", "corp")).await.unwrap();
    let index = |idp: &str| -> Owned {
        let raw = store.inner.trees.identity.get(index_key(idp)).unwrap();
        raw.map(|r| serde_json::from_slice(&r).unwrap())
            .unwrap_or_default()
    };
    for subject in ["u1", "u2", "u3"] {
        store.apply(revoke("corp", subject)).await.unwrap();
    }
    // A provider whose name starts with the other's keeps its own.
    store.apply(revoke("corp2", "u1")).await.unwrap();
    let owned = index("corp");
    assert_eq!(owned.rules, vec!["eng"]);
    assert!(owned.revoked.is_empty(), "{owned:?}");
    // A store written while revocations were indexed: "old" is listed in the index.
    let legacy = Owned {
        rules: owned.rules,
        revoked: vec!["old".into()],
    };
    let trees = &store.inner.trees;
    trees
        .identity
        .insert(index_key("corp"), serde_json::to_vec(&legacy).unwrap())
        .unwrap();
    trees
        .identity
        .insert(
            revocation_key("corp", "old"),
            serde_json::to_vec(&Revocation {
                idp: "corp".into(),
                subject: "old".into(),
                revoked_at_ms: 1,
            })
            .unwrap(),
        )
        .unwrap();
    store
        .apply(Mutation::Identity(IdentityMutation::Unrevoke {
            idp: "corp".into(),
            subject: "u2".into(),
        }))
        .await
        .unwrap();
    assert_eq!(index("corp").revoked, vec!["old"]);
    store
        .apply(Mutation::Identity(IdentityMutation::DeleteProvider {
            name: "corp".into(),
        }))
        .await
        .unwrap();
    let left: Vec<(String, String)> = store
        .revocations()
        .unwrap()
        .into_iter()
        .map(|r| (r.idp, r.subject))
        .collect();
    assert_eq!(left, vec![("corp2".to_owned(), "u1".to_owned())]);
    assert!(trees.identity.get(index_key("corp")).unwrap().is_none());
}
