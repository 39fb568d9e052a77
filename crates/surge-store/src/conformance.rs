//! The conformance suite every [`UserStore`] backend must pass.
//!
//! Public (but hidden from docs) so that each backend's test file runs the
//! very same assertions: `tests/conformance.rs` calls it on SQLite and on
//! PostgreSQL.

use crate::{NewUser, StoreError, UserFilter, UserPatch, UserStore};

fn new(name: &str, email: &str, age: Option<i32>) -> NewUser {
    NewUser {
        name: name.into(),
        email: email.into(),
        age,
    }
}

fn all() -> UserFilter {
    UserFilter {
        name_contains: None,
        email: None,
        limit: 100,
        offset: 0,
    }
}

/// Runs every users scenario against an empty store.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn users<S: UserStore>(store: &S) {
    // create + get round-trip exactly (timestamps included).
    let alice = store
        .create(new("Alice", "alice@example.com", Some(25)))
        .await
        .unwrap();
    assert!(alice.id > 0);
    assert_eq!(alice.created_at, alice.updated_at);
    assert_eq!(store.get(alice.id).await.unwrap(), alice);
    let bob = store
        .create(new("Bob", "bob@example.com", None))
        .await
        .unwrap();
    assert!(bob.id > alice.id, "ids increase");
    assert_eq!(bob.age, None);

    // Unique email regardless of case; nothing is stored on conflict.
    let dup = store.create(new("Other", "ALICE@example.com", None)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict { field: "email" })),
        "{dup:?}"
    );
    assert_eq!(store.list(&all()).await.unwrap().total, 2);

    // Missing rows.
    assert!(matches!(
        store.get(i64::MAX).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete(i64::MAX).await,
        Err(StoreError::NotFound)
    ));
    let p = UserPatch {
        name: Some("x".into()),
        ..UserPatch::default()
    };
    assert!(matches!(
        store.update(i64::MAX, p).await,
        Err(StoreError::NotFound)
    ));

    // Patch: only given fields change; Some(None) clears age.
    let patched = store
        .update(
            alice.id,
            UserPatch {
                name: Some("Alicia".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (patched.name.as_str(), patched.email.as_str(), patched.age),
        ("Alicia", "alice@example.com", Some(25))
    );
    assert_eq!(patched.created_at, alice.created_at);
    assert!(patched.updated_at >= alice.updated_at);
    let cleared = store
        .update(
            alice.id,
            UserPatch {
                age: Some(None),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.age, None);
    assert_eq!(cleared.name, "Alicia");
    let taken = store
        .update(
            bob.id,
            UserPatch {
                email: Some("Alice@Example.com".into()),
                ..UserPatch::default()
            },
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict { field: "email" })),
        "{taken:?}"
    );
    assert_eq!(
        store.get(bob.id).await.unwrap().email,
        "bob@example.com",
        "failed patch changed nothing"
    );

    // Listing: filters, wildcards taken literally, pagination, total.
    for i in 0..5 {
        store
            .create(new(
                &format!("user_{i}%"),
                &format!("u{i}@example.com"),
                Some(i),
            ))
            .await
            .unwrap();
    }
    let page = store
        .list(&UserFilter {
            limit: 2,
            offset: 1,
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 7);
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].id, bob.id, "ordered by id");
    let by_name = store
        .list(&UserFilter {
            name_contains: Some("USER_".into()),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(by_name.total, 5, "case-insensitive substring");
    let literal = store
        .list(&UserFilter {
            name_contains: Some("r_3%".into()),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(
        literal
            .items
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["user_3%"]
    );
    let underscore = store
        .list(&UserFilter {
            name_contains: Some("_".into()),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(underscore.total, 5, "`_` is not a wildcard");
    let by_email = store
        .list(&UserFilter {
            email: Some("U2@EXAMPLE.COM".into()),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(by_email.items.len(), 1);
    assert_eq!(by_email.items[0].age, Some(2));
    let past_end = store
        .list(&UserFilter {
            offset: 50,
            ..all()
        })
        .await
        .unwrap();
    assert!(past_end.items.is_empty());
    assert_eq!(past_end.total, 7);

    // Delete, then gone; its email is free again.
    store.delete(alice.id).await.unwrap();
    assert!(matches!(
        store.get(alice.id).await,
        Err(StoreError::NotFound)
    ));
    store
        .create(new("Alice again", "alice@example.com", None))
        .await
        .unwrap();
}
