//! White-label branding over HTTP (issue 14), on the real `ledger` binary
//! and both backends: the admin of an enterprise organization sets a
//! display name, a colour and a logo; every refusal (the tier, the role,
//! the colour, the logo's format, bytes, announced pixels, or a header
//! that lies) is a problem+json with its code and appends nothing; the
//! served logo is the server's own PNG, content-addressed and cacheable;
//! removing the branding takes the files away.

// Test code: a scenario reads best in one piece; the 70-line limit
// (clippy.toml) is for production code.
#![allow(clippy::too_many_lines)]

#[allow(dead_code)]
#[macro_use]
mod common;

use std::io::Cursor;

use common::{Backend, Body, OPERATOR, Server, id};
use reqwest::Method;
use serde_json::{Value, json};

backends!(branding_is_set_served_and_removed_and_every_refusal_changes_nothing);

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `width` × `height` image in `format`, a colour gradient.
fn image(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(pixels).write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// PNG's chunk CRC (CRC-32, ISO 3309), so a patched header stays well-formed.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A real PNG whose IHDR announces `width` × `height` (CRC fixed): its
/// header lies about the pixels that follow.
fn png_announcing(width: u32, height: u32) -> Vec<u8> {
    let mut png = image(1, 1, image::ImageFormat::Png);
    // Signature (8), length (4), "IHDR" (4) at 12, width at 16, height at 20, CRC at 29.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

async fn admin_token(s: &Server, org: &str, role: &str) -> String {
    let body = json!({ "role": role });
    let issued = s.post(&format!("/api/v1/organizations/{org}/tokens"), Some(OPERATOR), body).await.expect(201);
    id(&issued["token"])
}

async fn put(s: &Server, org: &str, token: &str, body: Value) -> common::Reply {
    s.send(Method::PUT, &format!("/api/v1/organizations/{org}/branding"), Some(token), Body::Json(body), &[]).await
}

fn with_logo(logo: &[u8]) -> Value {
    json!({ "displayName": "Acme Cloud", "primaryColor": "#1f6feb", "logo": base64(logo) })
}

/// A portal file over plain HTTP: status, headers, body.
async fn fetch(s: &Server, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let answer = reqwest::get(s.url(path)).await.unwrap();
    let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
    (status, headers, answer.bytes().await.unwrap().to_vec())
}

async fn branding_is_set_served_and_removed_and_every_refusal_changes_nothing(backend: Backend) {
    let s = backend.start().await;
    let acme = s.create_org("Acme Holdings").await;
    s.create_subscription(&acme, "enterprise", "2026-01-01", true).await;
    let (admin, analyst) = (admin_token(&s, &acme, "admin").await, admin_token(&s, &acme, "analyst").await);
    let small = s.create_org("Small Shop").await;
    s.create_subscription(&small, "starter", "2026-01-01", true).await;
    let small_admin = admin_token(&s, &small, "admin").await;
    let head = s.head().await;

    // Refusals, each with its code; none appends anything.
    let plain = json!({ "displayName": "Acme Cloud", "primaryColor": "#1f6feb" });
    put(&s, &small, &small_admin, plain.clone()).await.problem(409, "feature_not_in_tier");
    put(&s, &acme, &analyst, plain.clone()).await.problem(403, "forbidden");
    put(&s, &acme, &small_admin, plain.clone()).await.problem(404, "not_found");
    for colour in ["#abc", "red", "1f6feb", "#1f6feg", "#1f6feb; background: url(x)"] {
        let body = json!({ "displayName": "Acme Cloud", "primaryColor": colour });
        put(&s, &acme, &admin, body).await.problem(400, "invalid_color");
    }
    for name in ["   ", "Acme\u{7}Cloud", &"x".repeat(61)] {
        let body = json!({ "displayName": name, "primaryColor": "#1f6feb" });
        put(&s, &acme, &admin, body).await.problem(400, "validation_failed");
    }
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>"#;
    put(&s, &acme, &admin, with_logo(svg)).await.problem(400, "logo_format");
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    put(&s, &acme, &admin, with_logo(gif)).await.problem(400, "logo_format");
    let mut large = image(8, 8, image::ImageFormat::Png);
    large.resize(256 * 1024 + 1, 0);
    put(&s, &acme, &admin, with_logo(&large)).await.problem(400, "logo_too_large");
    let huge = with_logo(&vec![0u8; 300 * 1024]);
    put(&s, &acme, &admin, huge).await.problem(413, "payload_too_large");
    for (width, height) in [(5000, 10), (2001, 2000), (100_000, 100_000)] {
        let body = with_logo(&png_announcing(width, height));
        let problem = put(&s, &acme, &admin, body).await.problem(400, "logo_too_many_pixels");
        assert!(problem["detail"].as_str().unwrap().contains("4000000"), "{problem}");
    }
    put(&s, &acme, &admin, with_logo(&png_announcing(64, 64))).await.problem(400, "logo_invalid");
    let mut garbage = vec![0xff, 0xd8, 0xff, 0xe0];
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    put(&s, &acme, &admin, with_logo(&garbage)).await.problem(400, "logo_invalid");
    let not_base64 = json!({ "displayName": "Acme Cloud", "primaryColor": "#1f6feb", "logo": "***" });
    put(&s, &acme, &admin, not_base64).await.problem(400, "validation_failed");
    assert_eq!(s.head().await, head, "a refusal appends nothing");
    s.get(&format!("/api/v1/organizations/{acme}/branding"), Some(&admin)).await.problem(404, "not_found");

    // Set: a wide PNG shrunk into the box, stored and served as PNG.
    let set = put(&s, &acme, &admin, with_logo(&image(640, 200, image::ImageFormat::Png))).await.expect(200);
    assert_eq!(set["displayName"], "Acme Cloud");
    assert_eq!(set["primaryColor"], "#1f6feb");
    let logo = &set["logo"];
    assert_eq!((logo["width"].as_u64(), logo["height"].as_u64()), (Some(307), Some(96)), "{set}");
    assert_eq!(logo["contentType"], "image/png");
    let read = s.get(&format!("/api/v1/organizations/{acme}/branding"), Some(&admin)).await.expect(200);
    assert_eq!(read, set);
    let digest = logo["digest"].as_str().unwrap().to_owned();
    let logo_path = format!("/portal/static/brand/{acme}/{digest}.png");
    let (status, headers, png) = fetch(&s, &logo_path).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["cache-control"].to_str().unwrap().contains("immutable"), "{headers:?}");
    let served = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
    assert_eq!((served.width(), served.height()), (307, 96));
    let other = format!("/portal/static/brand/{acme}/{}.png", "0".repeat(64));
    assert_eq!(fetch(&s, &other).await.0, 404, "another digest");
    assert_eq!(fetch(&s, &format!("/portal/static/brand/{small}/{digest}.png")).await.0, 404, "another organization");
    let (status, headers, css) = fetch(&s, "/portal/static/brand/1f6feb.css").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(String::from_utf8(css).unwrap().contains("background: #1f6feb"));
    assert_eq!(fetch(&s, "/portal/static/brand/1f6feb;x.css").await.0, 404);

    // A JPEG is written as PNG too; a small one keeps its size.
    let jpeg = put(&s, &acme, &admin, with_logo(&image(120, 40, image::ImageFormat::Jpeg))).await.expect(200);
    assert_eq!((jpeg["logo"]["width"].as_u64(), jpeg["logo"]["height"].as_u64()), (Some(120), Some(40)));
    let digest = jpeg["logo"]["digest"].as_str().unwrap();
    let (_, _, png) = fetch(&s, &format!("/portal/static/brand/{acme}/{digest}.png")).await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "served as PNG");
    assert_eq!(fetch(&s, &logo_path).await.0, 404, "the replaced logo is not served");

    // The audit lists it as the organization's; removing takes it away.
    let audit = s.audit(&acme).await;
    assert_eq!(audit.iter().filter(|e| e["eventType"] == "BrandingSet").count(), 2, "{audit:#?}");
    let path = format!("/api/v1/organizations/{acme}/branding");
    s.send(Method::DELETE, &path, Some(&analyst), Body::None, &[]).await.problem(403, "forbidden");
    s.send(Method::DELETE, &path, Some(&admin), Body::None, &[]).await.expect(200);
    s.get(&path, Some(&admin)).await.problem(404, "not_found");
    assert_eq!(fetch(&s, &format!("/portal/static/brand/{acme}/{digest}.png")).await.0, 404);
    s.send(Method::DELETE, &path, Some(&admin), Body::None, &[]).await.problem(404, "not_found");
    s.stop().await;
}
