//! Files: upload where the category allows it, within MaxFileSizeKB, stored
//! content-addressed and fsynced next to the databases; download by readers
//! only; FILEUPLOAD and FILEDOWNLOAD recorded; the pool configuration.

use super::common::*;
use serde_json::{json, Value};

pub async fn upload(
    c: &Client,
    token: &str,
    room: i64,
    name: &str,
    cmid: &str,
    bytes: Vec<u8>,
) -> Answer {
    let resp = c
        .http
        .post(format!(
            "{}/api/v1/rooms/{room}/files?name={name}&client_msg_id={cmid}",
            c.base
        ))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Answer { status, body }
}

pub async fn download(c: &Client, token: &str, url: &str) -> (u16, Vec<u8>, String) {
    let resp = c
        .http
        .get(format!("{}{url}", c.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let disposition = resp
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, resp.bytes().await.unwrap().to_vec(), disposition)
}

#[tokio::test]
async fn upload_download_limits_and_crash() {
    let Setup {
        server,
        c,
        admin,
        alice,
        bob,
        cat,
    } = setup().await;
    let carol = c.user(&admin, "carol").await;
    let room = c
        .room(
            &alice,
            json!({"name": "team", "category": cat, "members": ["bob"]}),
        )
        .await;

    // The pool configuration: defaults, bad values, administrators only.
    let a = c
        .call("GET", "/api/v1/configuration", Some(&bob), Value::Null)
        .await;
    assert_eq!(a.body["max_file_size_kb"], 20000, "{}", a.body);
    assert_eq!(a.body["participant_update_limit"], 75);
    for bad in [
        json!({"default_chat_history": 0}),
        json!({"default_chat_history": 501}),
        json!({"max_file_size_kb": 0}),
        json!({"participant_update_limit": 0}),
        json!({"max_file_size_kb": "big"}),
    ] {
        let a = c
            .call("PATCH", "/api/v1/configuration", Some(&admin), bad.clone())
            .await;
        assert!(a.status == 422, "{bad}: {}", a.body);
    }
    let a = c
        .call(
            "PATCH",
            "/api/v1/configuration",
            Some(&bob),
            json!({"max_file_size_kb": 5}),
        )
        .await;
    assert_eq!(a.code(), "forbidden");
    let a = c
        .call(
            "PATCH",
            "/api/v1/configuration",
            Some(&admin),
            json!({"max_file_size_kb": 1, "default_chat_history": 2}),
        )
        .await;
    assert_eq!(
        (
            a.body["max_file_size_kb"].clone(),
            a.body["default_chat_history"].clone()
        ),
        (json!(1), json!(2))
    );

    // Too large: refused, nothing posted, nothing kept.
    let a = upload(&c, &alice, room, "big.txt", "f0", vec![b'x'; 1001]).await;
    assert_eq!((a.status, a.code()), (413, "file_too_large"), "{}", a.body);
    assert!(c.history(&alice, room).await.is_empty());
    // Just fits; posted as a message carrying the link.
    let content = b"quarterly numbers\n".repeat(50);
    assert!(content.len() <= 1000);
    let a = upload(&c, &alice, room, "report.txt", "f1", content.clone()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let file = a.body["file"].clone();
    assert_eq!(
        (file["name"].clone(), file["size"].clone()),
        (json!("report.txt"), json!(content.len()))
    );
    let url = file["url"].as_str().unwrap().to_string();
    let sha = file["sha256"].as_str().unwrap().to_string();
    // The same content again is stored once.
    let a = upload(&c, &bob, room, "copy.txt", "f2", content.clone()).await;
    assert_eq!(a.body["file"]["sha256"], sha);
    let blob = server
        .data_dir
        .join("files/sha256")
        .join(&sha[..2])
        .join(&sha[2..]);
    assert_eq!(std::fs::read(&blob).unwrap(), content);
    // History: the default is now 2 messages.
    let h = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(h.body["messages"].as_array().unwrap().len(), 2);

    // Browsers may authenticate with ?access_token= on any GET (a download
    // link, history) instead of the header.
    let a = c
        .call(
            "GET",
            &format!("{url}?access_token={bob}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(a.status, 200);
    let a = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{room}/messages?limit=1&access_token={bob}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(
        a.body["messages"].as_array().map(|m| m.len()),
        Some(1),
        "{}",
        a.body
    );
    let a = c
        .call(
            "GET",
            &format!("/api/v1/rooms/{room}/messages?lmit=1"),
            Some(&bob),
            Value::Null,
        )
        .await;
    assert_eq!(
        a.code(),
        "invalid_query",
        "unknown parameters are still refused"
    );

    // Members download; others may not; unknown files are not found.
    let (status, bytes, disposition) = download(&c, &bob, &url).await;
    assert_eq!((status, bytes), (200, content.clone()));
    assert!(
        disposition.contains("attachment; filename=\"report.txt\""),
        "{disposition}"
    );
    assert_eq!(download(&c, &carol, &url).await.0, 403);
    let other = format!("/api/v1/rooms/{room}/files/{}", "0".repeat(64));
    assert_eq!(download(&c, &bob, &other).await.0, 404);
    assert_eq!(
        download(
            &c,
            &bob,
            &format!("/api/v1/rooms/{room}/files/..%2F..%2Fmgc.db")
        )
        .await
        .0,
        404
    );
    assert_eq!(
        upload(&c, &carol, room, "x.txt", "c1", b"hi".to_vec())
            .await
            .code(),
        "forbidden"
    );
    assert_eq!(
        upload(&c, &alice, room, "", "f3", b"hi".to_vec())
            .await
            .code(),
        "invalid_value"
    );

    // A category without file upload.
    c.call(
        "PATCH",
        &format!("/api/v1/categories/{cat}"),
        Some(&admin),
        json!({"file_upload": false}),
    )
    .await;
    let a = upload(&c, &alice, room, "no.txt", "f4", b"no".to_vec()).await;
    assert_eq!((a.status, a.code()), (403, "file_upload_off"));

    // Compliance recorded the upload and the download.
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let r = c
            .call(
                "GET",
                "/api/v1/compliance/records?limit=10000",
                Some(&admin),
                Value::Null,
            )
            .await;
        kinds = r.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        if kinds.iter().any(|k| k == "FILEDOWNLOAD") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(kinds.iter().any(|k| k == "FILEUPLOAD"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "FILEDOWNLOAD"), "{kinds:?}");

    // A corrupted blob is never served.
    let saved = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, b"tampered").unwrap();
    assert_eq!(download(&c, &bob, &url).await.0, 500);
    std::fs::write(&blob, saved).unwrap();
    assert_eq!(download(&c, &bob, &url).await.0, 200);

    // An acknowledged upload survives SIGKILL.
    c.call(
        "PATCH",
        &format!("/api/v1/categories/{cat}"),
        Some(&admin),
        json!({"file_upload": true}),
    )
    .await;
    let last = b"written just before the crash".to_vec();
    let a = upload(&c, &alice, room, "last.txt", "f5", last.clone()).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let url = a.body["file"]["url"].as_str().unwrap().to_string();
    let mut server = server;
    server.kill9();
    let server = server.restart();
    let c = server.client();
    let bob = c.sign_in("bob", "bob-password").await;
    let (status, bytes, _) = download(&c, &bob, &url).await;
    assert_eq!((status, bytes), (200, last));
}
