//! Tag immutability rules: a protected tag is pushed once, then can be neither
//! moved nor deleted (by tag, by digest, or with its repository); other tags
//! and other repositories are untouched.

use berth_testkit::{BerthProcess, ImageFixture};
use serde_json::{Value, json};

use crate::common::{client, error_code, push_image, put_manifest};

#[tokio::test]
async fn protected_tags_cannot_be_moved_or_deleted() {
    let berth = BerthProcess::start(env!("CARGO_BIN_EXE_berth"));
    let c = client();
    let base = berth.url();
    let rules_url = format!("{base}/api/v1/projects/team/immutability");

    // Bad rules are refused whole.
    for (body, why) in [
        (json!({"rules": [{"pattern": "("}]}), "bad regex"),
        (json!({"rules": [{"pattern": ""}]}), "empty pattern"),
        (json!({"rules": [{"repository": "other/*", "pattern": "^v"}]}), "glob outside the project"),
        (json!({"rules": [{"pattern": "^v", "colour": "red"}]}), "unknown field"),
        (json!({"rule": []}), "missing rules"),
    ] {
        let r = c.put(&rules_url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
    }
    let r = c
        .put(format!("{base}/api/v1/projects/Bad..Name/immutability"))
        .json(&json!({"rules": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = c
        .put(&rules_url)
        .json(&json!({"rules": [{"pattern": r"^v\d+\.\d+\.\d+$"}, {"repository": "team/base", "pattern": "^stable$"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rules"][0]["repository"], "team/*", "the glob defaults to the whole project");
    let v: Value = c.get(&rules_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["rules"].as_array().unwrap().len(), 2);

    let one = ImageFixture::new(31, &[700]);
    let two = ImageFixture::new(32, &[800]);
    push_image(&c, &base, "team/app", &one, "v1.0.0").await;
    push_image(&c, &base, "team/app", &one, "latest").await;
    // The same manifest again is no move: accepted.
    let r =
        put_manifest(&c, &base, "team/app", "v1.0.0", berth_core::media_type::OCI_MANIFEST, one.manifest.clone()).await;
    assert_eq!(r.status(), 201);

    // Moving the protected tag is refused, and nothing changed.
    push_image(&c, &base, "team/app", &two, "latest").await; // blobs in place, unprotected tag moves
    let r =
        put_manifest(&c, &base, "team/app", "v1.0.0", berth_core::media_type::OCI_MANIFEST, two.manifest.clone()).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(body["errors"][0]["detail"]["reason"], "TAG_IMMUTABLE");
    let digest = |tag: &str| {
        let (c, url) = (c.clone(), format!("{base}/v2/team/app/manifests/{tag}"));
        async move { c.head(url).send().await.unwrap().headers()["docker-content-digest"].to_str().unwrap().to_owned() }
    };
    assert_eq!(digest("v1.0.0").await, one.digest.as_str());
    assert_eq!(digest("latest").await, two.digest.as_str());

    // Deleting it, by tag or through its manifest's digest, or the whole repository: refused.
    let r = c.delete(format!("{base}/v2/team/app/manifests/v1.0.0")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "DENIED");
    let r = c.delete(format!("{base}/v2/team/app/manifests/{}", one.digest)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c.delete(format!("{base}/api/images/team/app/v1.0.0")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c.delete(format!("{base}/api/v1/repositories/team/app")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(digest("v1.0.0").await, one.digest.as_str());

    // Unprotected tags, the other rule's repository and other projects behave as always.
    let r = c.delete(format!("{base}/v2/team/app/manifests/latest")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    push_image(&c, &base, "team/base", &one, "stable").await;
    push_image(&c, &base, "team/base", &one, "v2.0.0").await;
    let r = put_manifest(&c, &base, "team/base", "stable", berth_core::media_type::OCI_MANIFEST, two.manifest.clone())
        .await;
    assert_eq!(r.status(), 400, "two's blobs are not in team/base, so the push fails before the rule matters");
    push_image(&c, &base, "team/base", &two, "stable-candidate").await;
    let r = put_manifest(&c, &base, "team/base", "stable", berth_core::media_type::OCI_MANIFEST, two.manifest.clone())
        .await;
    assert_eq!(r.status(), 403, "stable is protected in team/base");
    push_image(&c, &base, "other/app", &one, "v1.0.0").await;
    push_image(&c, &base, "other/app", &two, "v1.0.0").await;

    // Lifting the rules lets the tag move again.
    let r = c.put(&rules_url).json(&json!({"rules": []})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r =
        put_manifest(&c, &base, "team/app", "v1.0.0", berth_core::media_type::OCI_MANIFEST, two.manifest.clone()).await;
    assert_eq!(r.status(), 201);
    let r = c.delete(format!("{base}/v2/team/app/manifests/v1.0.0")).send().await.unwrap();
    assert_eq!(r.status(), 202);
}
