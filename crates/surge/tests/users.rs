//! `/users` CRUD on both backends.

mod common;

use common::{
    Backend, Server, assert_error, assert_rfc3339, assert_validation_fields, backend_tests,
    detail_fields,
};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests! {
    create_user_returns_201_with_location_and_user => create_user_returns_201_with_location_and_user_sqlite, create_user_returns_201_with_location_and_user_postgres;
    create_user_age_absent_or_null_is_stored_as_null => create_user_age_absent_or_null_is_stored_as_null_sqlite, create_user_age_absent_or_null_is_stored_as_null_postgres;
    create_user_accepts_boundary_values => create_user_accepts_boundary_values_sqlite, create_user_accepts_boundary_values_postgres;
    create_user_reports_every_bad_field_at_once => create_user_reports_every_bad_field_at_once_sqlite, create_user_reports_every_bad_field_at_once_postgres;
    create_user_name_length_counts_characters_not_bytes => create_user_name_length_counts_characters_not_bytes_sqlite, create_user_name_length_counts_characters_not_bytes_postgres;
    create_user_rejects_unknown_field_with_422 => create_user_rejects_unknown_field_with_422_sqlite, create_user_rejects_unknown_field_with_422_postgres;
    create_user_malformed_json_is_400_and_wrong_content_type_is_415 => create_user_malformed_json_is_400_and_wrong_content_type_is_415_sqlite, create_user_malformed_json_is_400_and_wrong_content_type_is_415_postgres;
    create_user_duplicate_email_is_409_even_in_other_case => create_user_duplicate_email_is_409_even_in_other_case_sqlite, create_user_duplicate_email_is_409_even_in_other_case_postgres;
    get_user_returns_the_created_user => get_user_returns_the_created_user_sqlite, get_user_returns_the_created_user_postgres;
    list_users_orders_by_id_and_paginates_with_total => list_users_orders_by_id_and_paginates_with_total_sqlite, list_users_orders_by_id_and_paginates_with_total_postgres;
    list_users_filters_by_name_substring_case_insensitively => list_users_filters_by_name_substring_case_insensitively_sqlite, list_users_filters_by_name_substring_case_insensitively_postgres;
    list_users_filters_by_exact_email_case_insensitively => list_users_filters_by_exact_email_case_insensitively_sqlite, list_users_filters_by_exact_email_case_insensitively_postgres;
    list_users_rejects_bad_limit_and_offset_with_422 => list_users_rejects_bad_limit_and_offset_with_422_sqlite, list_users_rejects_bad_limit_and_offset_with_422_postgres;
    patch_user_changes_only_given_fields => patch_user_changes_only_given_fields_sqlite, patch_user_changes_only_given_fields_postgres;
    patch_user_age_null_clears_age => patch_user_age_null_clears_age_sqlite, patch_user_age_null_clears_age_postgres;
    patch_user_empty_object_is_422 => patch_user_empty_object_is_422_sqlite, patch_user_empty_object_is_422_postgres;
    patch_user_validates_fields_with_422 => patch_user_validates_fields_with_422_sqlite, patch_user_validates_fields_with_422_postgres;
    patch_user_to_another_users_email_is_409 => patch_user_to_another_users_email_is_409_sqlite, patch_user_to_another_users_email_is_409_postgres;
    delete_user_returns_204_then_404 => delete_user_returns_204_then_404_sqlite, delete_user_returns_204_then_404_postgres;
    deleted_users_email_can_be_reused => deleted_users_email_can_be_reused_sqlite, deleted_users_email_can_be_reused_postgres;
    non_integer_user_id_is_422_naming_id => non_integer_user_id_is_422_naming_id_sqlite, non_integer_user_id_is_422_naming_id_postgres;
    unknown_user_id_is_404_for_get_patch_delete => unknown_user_id_is_404_for_get_patch_delete_sqlite, unknown_user_id_is_404_for_get_patch_delete_postgres;
    list_users_default_limit_is_20_and_max_is_100 => list_users_default_limit_is_20_and_max_is_100_sqlite, list_users_default_limit_is_20_and_max_is_100_postgres;
    concurrent_creates_with_distinct_emails_all_succeed => concurrent_creates_with_distinct_emails_all_succeed_sqlite, concurrent_creates_with_distinct_emails_all_succeed_postgres;
    concurrent_creates_with_one_email_yield_one_201_and_409s => concurrent_creates_with_one_email_yield_one_201_and_409s_sqlite, concurrent_creates_with_one_email_yield_one_201_and_409s_postgres;
}

/// POST /users and assert 201; returns the created user.
async fn create(server: &Server, body: Value) -> Value {
    let resp = server.post_json("/users", &body).await;
    resp.expect_status(201);
    resp.json()
}

async fn create_named(server: &Server, name: &str, email: &str) -> Value {
    create(server, json!({"name": name, "email": email})).await
}

fn id_of(user: &Value) -> i64 {
    user["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("user id must be an integer: {user}"))
}

/// The ids of a listing's `items`, in order.
fn item_ids(body: &serde_json::Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .map(id_of)
        .collect()
}

#[track_caller]
fn assert_user_shape(user: &Value) {
    assert!(id_of(user) > 0, "{user}");
    assert!(user["name"].is_string(), "{user}");
    assert!(user["email"].is_string(), "{user}");
    assert!(
        user["age"].is_null() || user["age"].is_i64(),
        "age must be an integer or null: {user}"
    );
    assert!(
        user.get("age").is_some(),
        "age must be present (null when unset): {user}"
    );
    assert_rfc3339(&user["created_at"], "created_at");
    assert_rfc3339(&user["updated_at"], "updated_at");
    let keys: Vec<_> = user.as_object().unwrap().keys().cloned().collect();
    for k in &keys {
        assert!(
            ["id", "name", "email", "age", "created_at", "updated_at"].contains(&k.as_str()),
            "unexpected user field {k}: {user}"
        );
    }
}

async fn total_users(server: &Server) -> u64 {
    let resp = server.get("/users").await;
    resp.expect_status(200);
    resp.json()["total"].as_u64().expect("total")
}

async fn create_user_returns_201_with_location_and_user(b: Backend) {
    let server = Server::start(b, &[]).await;
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "Ada Lovelace", "email": "ada@example.com", "age": 36}),
        )
        .await;
    resp.expect_status(201);
    resp.assert_json_content_type();
    let user = resp.json();
    assert_user_shape(&user);
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["age"], 36);
    let id = id_of(&user);
    assert_eq!(
        resp.header("location"),
        Some(format!("/users/{id}").as_str()),
        "Location header must be /users/{{id}}"
    );
}

async fn create_user_age_absent_or_null_is_stored_as_null(b: Backend) {
    let server = Server::start(b, &[]).await;
    let a = create(
        &server,
        json!({"name": "No Age", "email": "noage@example.com"}),
    )
    .await;
    assert_user_shape(&a);
    assert!(a["age"].is_null(), "{a}");
    let b_ = create(
        &server,
        json!({"name": "Null Age", "email": "nullage@example.com", "age": null}),
    )
    .await;
    assert!(b_["age"].is_null(), "{b_}");
    let fetched = server.get(&format!("/users/{}", id_of(&a))).await.json();
    assert!(fetched["age"].is_null(), "{fetched}");
}

async fn create_user_accepts_boundary_values(b: Backend) {
    let server = Server::start(b, &[]).await;
    let long_name = "n".repeat(100);
    let u = create(
        &server,
        json!({"name": long_name, "email": "max@example.com", "age": 150}),
    )
    .await;
    assert_eq!(u["name"].as_str().unwrap().chars().count(), 100);
    assert_eq!(u["age"], 150);
    let u = create(
        &server,
        json!({"name": "Z", "email": "min@example.com", "age": 0}),
    )
    .await;
    assert_eq!(u["name"], "Z");
    assert_eq!(u["age"], 0);
}

async fn create_user_reports_every_bad_field_at_once(b: Backend) {
    let server = Server::start(b, &[]).await;
    // name empty, bad email, age 151
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "", "email": "not-an-email", "age": 151}),
        )
        .await;
    assert_validation_fields(&resp, &["name", "email", "age"]);

    // name 101 chars, email without domain, age -1
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "x".repeat(101), "email": "a@", "age": -1}),
        )
        .await;
    assert_validation_fields(&resp, &["name", "email", "age"]);

    // wrong type for age plus an unknown field plus an empty name
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "", "email": "ok@example.com", "age": "x", "nickname": "y"}),
        )
        .await;
    assert_validation_fields(&resp, &["name", "age", "nickname"]);

    // wrong types for name and email
    let resp = server
        .post_json("/users", &json!({"name": 5, "email": false}))
        .await;
    assert_validation_fields(&resp, &["name", "email"]);

    // required fields missing
    let resp = server.post_json("/users", &json!({})).await;
    assert_validation_fields(&resp, &["name", "email"]);

    // Each single bad field on its own.
    for (body, field) in [
        (json!({"name": "", "email": "a@example.com"}), "name"),
        (
            json!({"name": "x".repeat(101), "email": "a@example.com"}),
            "name",
        ),
        (json!({"name": "A", "email": "no-at-sign"}), "email"),
        (
            json!({"name": "A", "email": "a@example.com", "age": 151}),
            "age",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "age": -1}),
            "age",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "age": "x"}),
            "age",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "age": 1.5}),
            "age",
        ),
    ] {
        let resp = server.post_json("/users", &body).await;
        let err = assert_error(&resp, 422, "validation_failed");
        assert_eq!(
            detail_fields(&err),
            vec![field.to_string()],
            "POST /users {body} should name only {field}: {err}"
        );
    }

    assert_eq!(
        total_users(&server).await,
        0,
        "no invalid user may be stored"
    );
}

async fn create_user_name_length_counts_characters_not_bytes(b: Backend) {
    let server = Server::start(b, &[]).await;
    // 100 two-byte characters: 100 chars (ok), 200 bytes.
    let name = "é".repeat(100);
    let u = create(
        &server,
        json!({"name": name, "email": "accent@example.com"}),
    )
    .await;
    assert_eq!(u["name"], name.as_str());
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "é".repeat(101), "email": "accent2@example.com"}),
        )
        .await;
    assert_validation_fields(&resp, &["name"]);
}

async fn create_user_rejects_unknown_field_with_422(b: Backend) {
    let server = Server::start(b, &[]).await;
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "A", "email": "a@example.com", "role": "admin"}),
        )
        .await;
    assert_validation_fields(&resp, &["role"]);
    // `id` and timestamps are not client-settable either.
    let resp = server
        .post_json(
            "/users",
            &json!({"name": "A", "email": "a@example.com", "id": 7}),
        )
        .await;
    assert_validation_fields(&resp, &["id"]);
    assert_eq!(total_users(&server).await, 0);
}

async fn create_user_malformed_json_is_400_and_wrong_content_type_is_415(b: Backend) {
    let server = Server::start(b, &[]).await;
    let resp = server
        .send_raw(
            Method::POST,
            "/users",
            Some("application/json"),
            "{\"name\": \"A\", ",
        )
        .await;
    assert_error(&resp, 400, "bad_request");
    let resp = server
        .send_raw(
            Method::POST,
            "/users",
            None,
            "{\"name\":\"A\",\"email\":\"a@example.com\"}",
        )
        .await;
    assert_error(&resp, 415, "unsupported_media_type");
    // Body not an object.
    let resp = server.post_json("/users", &json!(["A"])).await;
    assert_error(&resp, 422, "validation_failed");
    assert_eq!(total_users(&server).await, 0);
}

async fn create_user_duplicate_email_is_409_even_in_other_case(b: Backend) {
    let server = Server::start(b, &[]).await;
    create_named(&server, "First", "dup@example.com").await;
    for email in ["dup@example.com", "DUP@Example.COM"] {
        let resp = server
            .post_json("/users", &json!({"name": "Second", "email": email}))
            .await;
        let err = assert_error(&resp, 409, "conflict");
        assert_eq!(
            detail_fields(&err),
            vec!["email".to_string()],
            "409 details should name email: {err}"
        );
    }
    assert_eq!(total_users(&server).await, 1);
}

async fn get_user_returns_the_created_user(b: Backend) {
    let server = Server::start(b, &[]).await;
    let created = create(
        &server,
        json!({"name": "Grace", "email": "grace@example.com", "age": 85}),
    )
    .await;
    let resp = server.get(&format!("/users/{}", id_of(&created))).await;
    resp.expect_status(200);
    resp.assert_json_content_type();
    let fetched = resp.json();
    assert_user_shape(&fetched);
    assert_eq!(fetched, created, "GET must return what POST returned");
}

async fn list_users_orders_by_id_and_paginates_with_total(b: Backend) {
    let server = Server::start(b, &[]).await;
    // Empty list first.
    let resp = server.get("/users").await;
    resp.expect_status(200);
    resp.assert_json_content_type();
    let body = resp.json();
    assert_eq!(
        body,
        json!({"items": [], "total": 0, "limit": 20, "offset": 0})
    );

    let mut ids = Vec::new();
    for i in 0..5 {
        let u = create_named(&server, &format!("User {i}"), &format!("u{i}@example.com")).await;
        ids.push(id_of(&u));
    }
    let body = server.get("/users").await.json();
    assert_eq!(body["total"], 5, "{body}");
    assert_eq!(body["limit"], 20, "{body}");
    assert_eq!(body["offset"], 0, "{body}");
    let got: Vec<i64> = item_ids(&body);
    assert_eq!(got, ids, "items must be ordered by id");
    for item in body["items"].as_array().unwrap() {
        assert_user_shape(item);
    }

    let body = server.get("/users?limit=2&offset=1").await.json();
    assert_eq!(
        body["total"], 5,
        "total counts all matches, not the page: {body}"
    );
    assert_eq!(body["limit"], 2, "{body}");
    assert_eq!(body["offset"], 1, "{body}");
    let got: Vec<i64> = item_ids(&body);
    assert_eq!(got, ids[1..3].to_vec());

    let body = server.get("/users?limit=100&offset=4").await.json();
    let got: Vec<i64> = item_ids(&body);
    assert_eq!(got, ids[4..].to_vec());

    let body = server.get("/users?offset=50").await.json();
    assert_eq!(body["items"], json!([]), "{body}");
    assert_eq!(body["total"], 5, "{body}");

    let body = server.get("/users?limit=1").await.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["limit"], 1);
}

async fn list_users_filters_by_name_substring_case_insensitively(b: Backend) {
    let server = Server::start(b, &[]).await;
    let alice = create_named(&server, "Alice", "alice@example.com").await;
    let alicia = create_named(&server, "alicia", "alicia@example.com").await;
    create_named(&server, "Bob", "bob@example.com").await;
    let malik = create_named(&server, "MALIK", "malik@example.com").await;

    let body = server.get("/users?name=ali").await.json();
    let got: Vec<i64> = item_ids(&body);
    assert_eq!(
        got,
        vec![id_of(&alice), id_of(&alicia), id_of(&malik)],
        "{body}"
    );
    assert_eq!(body["total"], 3, "{body}");

    let body = server.get("/users?name=ALI&limit=1&offset=1").await.json();
    let got: Vec<i64> = item_ids(&body);
    assert_eq!(got, vec![id_of(&alicia)], "{body}");
    assert_eq!(body["total"], 3, "{body}");

    let body = server.get("/users?name=zzz").await.json();
    assert_eq!(body["items"], json!([]));
    assert_eq!(body["total"], 0);
}

async fn list_users_filters_by_exact_email_case_insensitively(b: Backend) {
    let server = Server::start(b, &[]).await;
    let alice = create_named(&server, "Alice", "alice@example.com").await;
    create_named(&server, "Alicia", "alice@example.com.au").await;

    let body = server.get("/users?email=ALICE@Example.com").await.json();
    let got: Vec<i64> = item_ids(&body);
    assert_eq!(got, vec![id_of(&alice)], "{body}");
    assert_eq!(body["total"], 1, "{body}");

    // Exact, not substring.
    let body = server.get("/users?email=alice@").await.json();
    assert_eq!(body["items"], json!([]), "{body}");
    assert_eq!(body["total"], 0, "{body}");

    // Both filters combine.
    let body = server
        .get("/users?name=alicia&email=alice@example.com")
        .await
        .json();
    assert_eq!(body["total"], 0, "{body}");
}

async fn list_users_rejects_bad_limit_and_offset_with_422(b: Backend) {
    let server = Server::start(b, &[]).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
    ] {
        let resp = server.get(&format!("/users?{query}")).await;
        let err = assert_error(&resp, 422, "validation_failed");
        assert!(
            detail_fields(&err).contains(&field.to_string()),
            "GET /users?{query} should name {field}: {err}"
        );
    }
    let resp = server.get("/users?limit=100").await;
    resp.expect_status(200);
}

async fn patch_user_changes_only_given_fields(b: Backend) {
    let server = Server::start(b, &[]).await;
    let u = create(
        &server,
        json!({"name": "Old Name", "email": "old@example.com", "age": 40}),
    )
    .await;
    let path = format!("/users/{}", id_of(&u));

    let resp = server.patch_json(&path, &json!({"name": "New Name"})).await;
    resp.expect_status(200);
    resp.assert_json_content_type();
    let patched = resp.json();
    assert_user_shape(&patched);
    assert_eq!(patched["id"], u["id"]);
    assert_eq!(patched["name"], "New Name");
    assert_eq!(patched["email"], "old@example.com");
    assert_eq!(patched["age"], 40);
    assert_eq!(patched["created_at"], u["created_at"]);

    let patched = server
        .patch_json(&path, &json!({"email": "new@example.com", "age": 41}))
        .await;
    patched.expect_status(200);
    let patched = patched.json();
    assert_eq!(patched["name"], "New Name");
    assert_eq!(patched["email"], "new@example.com");
    assert_eq!(patched["age"], 41);

    let fetched = server.get(&path).await.json();
    assert_eq!(fetched, patched, "GET must reflect the PATCH");

    // The old email is free again, the new one is taken.
    create_named(&server, "Other", "old@example.com").await;
}

async fn patch_user_age_null_clears_age(b: Backend) {
    let server = Server::start(b, &[]).await;
    let u = create(
        &server,
        json!({"name": "Aged", "email": "aged@example.com", "age": 30}),
    )
    .await;
    let path = format!("/users/{}", id_of(&u));
    let resp = server.patch_json(&path, &json!({"age": null})).await;
    resp.expect_status(200);
    let patched = resp.json();
    assert!(patched["age"].is_null(), "{patched}");
    assert_eq!(patched["name"], "Aged");
    let fetched = server.get(&path).await.json();
    assert!(fetched["age"].is_null(), "{fetched}");
}

async fn patch_user_empty_object_is_422(b: Backend) {
    let server = Server::start(b, &[]).await;
    let u = create_named(&server, "Someone", "someone@example.com").await;
    let resp = server
        .patch_json(&format!("/users/{}", id_of(&u)), &json!({}))
        .await;
    assert_error(&resp, 422, "validation_failed");
}

async fn patch_user_validates_fields_with_422(b: Backend) {
    let server = Server::start(b, &[]).await;
    let u = create(
        &server,
        json!({"name": "Valid", "email": "valid@example.com", "age": 20}),
    )
    .await;
    let path = format!("/users/{}", id_of(&u));
    let resp = server
        .patch_json(
            &path,
            &json!({"name": "", "email": "bad", "age": 151, "extra": 1}),
        )
        .await;
    assert_validation_fields(&resp, &["name", "email", "age", "extra"]);
    for (body, field) in [
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": null}), "name"),
        (json!({"email": null}), "email"),
        (json!({"age": -1}), "age"),
        (json!({"age": "x"}), "age"),
    ] {
        let resp = server.patch_json(&path, &body).await;
        assert_validation_fields(&resp, &[field]);
    }
    let resp = server
        .send_raw(Method::PATCH, &path, Some("application/json"), "{\"age\":")
        .await;
    assert_error(&resp, 400, "bad_request");
    let resp = server
        .send_raw(Method::PATCH, &path, None, "{\"age\":1}")
        .await;
    assert_error(&resp, 415, "unsupported_media_type");
    let fetched = server.get(&path).await.json();
    assert_eq!(fetched, u, "a rejected PATCH must change nothing");
}

async fn patch_user_to_another_users_email_is_409(b: Backend) {
    let server = Server::start(b, &[]).await;
    create_named(&server, "Taken", "taken@example.com").await;
    let u = create_named(&server, "Mover", "mover@example.com").await;
    let path = format!("/users/{}", id_of(&u));
    for email in ["taken@example.com", "TAKEN@example.com"] {
        let resp = server.patch_json(&path, &json!({"email": email})).await;
        let err = assert_error(&resp, 409, "conflict");
        assert_eq!(detail_fields(&err), vec!["email".to_string()], "{err}");
    }
    assert_eq!(server.get(&path).await.json()["email"], "mover@example.com");
}

async fn delete_user_returns_204_then_404(b: Backend) {
    let server = Server::start(b, &[]).await;
    let u = create_named(&server, "Doomed", "doomed@example.com").await;
    let keep = create_named(&server, "Kept", "kept@example.com").await;
    let path = format!("/users/{}", id_of(&u));
    let resp = server.delete(&path).await;
    resp.expect_status(204);
    assert!(resp.text.is_empty(), "204 has no body: {:?}", resp.text);
    resp.request_id();
    assert_error(&server.get(&path).await, 404, "not_found");
    assert_error(&server.delete(&path).await, 404, "not_found");
    assert_error(
        &server.patch_json(&path, &json!({"name": "Back"})).await,
        404,
        "not_found",
    );
    let body = server.get("/users").await.json();
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["items"][0]["id"], keep["id"]);
}

async fn deleted_users_email_can_be_reused(b: Backend) {
    let server = Server::start(b, &[]).await;
    let u = create_named(&server, "Once", "reuse@example.com").await;
    server
        .delete(&format!("/users/{}", id_of(&u)))
        .await
        .expect_status(204);
    let again = create_named(&server, "Twice", "reuse@example.com").await;
    assert_ne!(again["id"], u["id"], "ids are not reused");
}

async fn non_integer_user_id_is_422_naming_id(b: Backend) {
    let server = Server::start(b, &[]).await;
    for id in ["abc", "1.5", "-"] {
        let path = format!("/users/{id}");
        assert_validation_fields(&server.get(&path).await, &["id"]);
        assert_validation_fields(
            &server.patch_json(&path, &json!({"name": "X"})).await,
            &["id"],
        );
        assert_validation_fields(&server.delete(&path).await, &["id"]);
    }
}

async fn unknown_user_id_is_404_for_get_patch_delete(b: Backend) {
    let server = Server::start(b, &[]).await;
    create_named(&server, "Exists", "exists@example.com").await;
    let path = "/users/987654";
    assert_error(&server.get(path).await, 404, "not_found");
    assert_error(
        &server.patch_json(path, &json!({"name": "Ghost"})).await,
        404,
        "not_found",
    );
    assert_error(&server.delete(path).await, 404, "not_found");
}

async fn list_users_default_limit_is_20_and_max_is_100(b: Backend) {
    let server = Server::start(b, &[]).await;
    for i in 0..25 {
        create_named(
            &server,
            &format!("Many {i}"),
            &format!("many{i}@example.com"),
        )
        .await;
    }
    let body = server.get("/users").await.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 20, "{body}");
    assert_eq!(body["total"], 25);
    assert_eq!(body["limit"], 20);
    let body = server.get("/users?limit=100").await.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 25);
    assert_eq!(body["limit"], 100);
}

/// POST each body concurrently; returns the responses in order.
async fn concurrent_posts(server: &Server, bodies: Vec<Value>) -> Vec<common::Resp> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let rb = server.client.post(server.url("/users")).json(&body);
            tokio::spawn(
                async move { common::Resp::read(rb.send().await.expect("POST /users")).await },
            )
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

async fn concurrent_creates_with_distinct_emails_all_succeed(b: Backend) {
    let server = Server::start(b, &[]).await;
    let bodies = (0..20)
        .map(|i| json!({"name": format!("Par {i}"), "email": format!("par{i}@example.com")}))
        .collect();
    let resps = concurrent_posts(&server, bodies).await;
    let statuses: Vec<u16> = resps.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "20 concurrent creates with distinct emails should all be 201: {statuses:?}\n{}",
        resps
            .iter()
            .filter(|r| r.status.as_u16() != 201)
            .map(|r| r.text.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut ids: Vec<i64> = resps.iter().map(|r| id_of(&r.json())).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "ids must be unique");
    assert_eq!(total_users(&server).await, 20);
}

async fn concurrent_creates_with_one_email_yield_one_201_and_409s(b: Backend) {
    let server = Server::start(b, &[]).await;
    let bodies = (0..12)
        .map(|i| {
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@Example.com"
            };
            json!({"name": format!("Racer {i}"), "email": email})
        })
        .collect();
    let resps = concurrent_posts(&server, bodies).await;
    let statuses: Vec<u16> = resps.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "exactly one concurrent create may win: {statuses:?}"
    );
    for r in resps.iter().filter(|r| r.status.as_u16() != 201) {
        assert_error(r, 409, "conflict");
    }
    assert_eq!(total_users(&server).await, 1);
}
