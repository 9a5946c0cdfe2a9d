//! Micro-benchmarks of the CPU work on the purchase hot path, everything a
//! `POST /api/purchase-product` does around its single EVALSHA:
//!
//! - `parse/*`: decoding the real purchase body into `PurchaseBody` with
//!   serde_json, the server's strict extractor, and simd-json (with a fresh
//!   mutable copy per call, and with reused buffers);
//! - `jwt/*`: HS256 verification of a customer token, and `CurrentUser`;
//! - `reply/*`: decoding the purchase script's reply;
//! - `keys/*`: the Redis key strings built for a request;
//! - `response/*`: rendering the 201 body and an error body.
//!
//! No Redis or MongoDB is needed. Run with `cargo bench --bench engine`
//! (a quick pass: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`;
//! one group: `cargo bench --bench engine -- parse/`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use flashsale::auth::{CurrentUser, Keys, Role};
use flashsale::engine::{Placed, PurchaseOutcome, SaleKeys};
use flashsale::error::ErrorCode;
use flashsale::http::error::ApiError;
use flashsale::http::extract::parse_json;
use flashsale::http::handlers::purchase::{self, PurchaseBody};
use flashsale::http::response;
use flashsale::ids::{SaleId, UserId};
use http::StatusCode;

/// The body a client sends, byte for byte as the load scripts send it.
const BODY: &[u8] = br#"{"flashSaleId":"65f1c0ffee0123456789abcd","quantity":2}"#;

/// The accepted reply of `lua/purchase.lua`: status, seq, remaining, ms, cents, user total.
const ACCEPTED: [i64; 6] = [0, 7, 3, 1_700_000_000_000, 8000, 2];
/// The sold-out reply.
const SOLD_OUT: [i64; 1] = [4];

fn check_body(b: &PurchaseBody) {
    assert_eq!(b.flash_sale_id, "65f1c0ffee0123456789abcd");
    assert_eq!(b.quantity, 2);
}

fn parse(c: &mut Criterion) {
    // Every decoder must agree on the body before any is timed.
    check_body(&serde_json::from_slice::<PurchaseBody>(BODY).expect("serde_json"));
    check_body(&parse_json::<PurchaseBody>(BODY).expect("parse_json"));
    check_body(&simd_json::serde::from_slice::<PurchaseBody>(&mut BODY.to_vec()).expect("simd"));
    let unknown = br#"{"flashSaleId":"65f1c0ffee0123456789abcd","quantity":2,"x":1}"#;
    assert!(simd_json::serde::from_slice::<PurchaseBody>(&mut unknown.to_vec()).is_err());

    let mut g = c.benchmark_group("parse");
    g.bench_function("serde_json", |b| {
        b.iter(|| serde_json::from_slice::<PurchaseBody>(black_box(BODY)))
    });
    g.bench_function("parse_json", |b| {
        b.iter(|| parse_json::<PurchaseBody>(black_box(BODY)))
    });
    // simd-json rewrites its input, so each call gets a fresh copy made outside
    // the timing. The parsed body is dropped inside the timing, as in the
    // serde_json benches; the copy is handed back and freed outside it.
    g.bench_function("simd_json", |b| {
        b.iter_batched(
            || BODY.to_vec(),
            |mut buf| {
                drop(black_box(simd_json::serde::from_slice::<PurchaseBody>(
                    black_box(&mut buf),
                )));
                buf
            },
            BatchSize::SmallInput,
        )
    });
    // What a server would do with a `Bytes` body: copy it into a reused input
    // buffer (timed) and parse with reused simd-json buffers. No allocation
    // but the body's own String.
    g.bench_function("simd_json_buffers", |b| {
        let mut input = Vec::with_capacity(BODY.len());
        let mut buffers = simd_json::Buffers::new(BODY.len());
        b.iter(|| {
            input.clear();
            input.extend_from_slice(black_box(BODY));
            simd_json::serde::from_slice_with_buffers::<PurchaseBody>(&mut input, &mut buffers)
        })
    });
    g.finish();
}

fn jwt(c: &mut Criterion) {
    let keys = Keys::new(&[7u8; 32], "flashsale", Duration::from_secs(3600));
    let id_hex = UserId::new().hex();
    let token = keys.issue(&id_hex, Role::Customer).expect("issue");
    assert_eq!(keys.verify(&token).expect("verify").sub, id_hex);

    let mut g = c.benchmark_group("jwt");
    g.bench_function("verify", |b| b.iter(|| keys.verify(black_box(&token))));
    g.bench_function("current_user", |b| {
        b.iter(|| CurrentUser::from_token(&keys, black_box(&token)))
    });
    g.finish();
}

fn reply(c: &mut Criterion) {
    assert!(matches!(
        PurchaseOutcome::decode(&ACCEPTED, 2),
        Ok(PurchaseOutcome::Accepted { .. })
    ));
    assert_eq!(
        PurchaseOutcome::decode(&SOLD_OUT, 2),
        Ok(PurchaseOutcome::Refused(
            flashsale::engine::Refusal::SoldOut
        ))
    );

    let mut g = c.benchmark_group("reply");
    g.bench_function("decode_accepted", |b| {
        b.iter(|| PurchaseOutcome::decode(black_box(&ACCEPTED), black_box(2)))
    });
    g.bench_function("decode_sold_out", |b| {
        b.iter(|| PurchaseOutcome::decode(black_box(&SOLD_OUT), black_box(2)))
    });
    g.finish();
}

fn keys(c: &mut Criterion) {
    let sale = SaleId::parse("65f1c0ffee0123456789abcd").expect("sale id");
    let user_hex = UserId::new().hex();

    let mut g = c.benchmark_group("keys");
    // What a request without an Idempotency-Key builds.
    g.bench_function("sale_and_idempotency", |b| {
        b.iter(|| {
            let k = SaleKeys::new(black_box(sale));
            let idem = k.idempotency(black_box(&user_hex), None);
            (k, idem)
        })
    });
    let k = SaleKeys::new(sale);
    g.bench_function("idempotency_with_key", |b| {
        b.iter(|| {
            k.idempotency(
                black_box(&user_hex),
                black_box(Some("2f1d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b")),
            )
        })
    });
    g.finish();
}

fn responses(c: &mut Criterion) {
    let sold_out = ApiError::new(ErrorCode::SoldOut, "the flash sale is sold out");
    let view = purchase::view(
        SaleId::parse("65f1c0ffee0123456789abcd").expect("id"),
        UserId::parse("65f1c0ffee0123456789abce").expect("id"),
        &Placed {
            seq: 7,
            remaining: 3,
            purchased_at_ms: 1_700_000_000_000,
            unit_price_cents: 8000,
            quantity: 2,
        },
    );
    let value = serde_json::to_value(&view).expect("to_value");
    assert_eq!(
        response::json(StatusCode::CREATED, &view).status(),
        StatusCode::CREATED
    );
    assert_eq!(response::error(&sold_out).status(), StatusCode::CONFLICT);

    let mut g = c.benchmark_group("response");
    g.bench_function("error_sold_out", |b| {
        b.iter(|| response::error(black_box(&sold_out)))
    });
    g.bench_function("created_struct", |b| {
        b.iter(|| response::json(StatusCode::CREATED, black_box(&view)))
    });
    g.bench_function("created_value", |b| {
        b.iter(|| response::json(StatusCode::CREATED, black_box(&value)))
    });
    g.finish();
}

criterion_group!(benches, parse, jwt, reply, keys, responses);
criterion_main!(benches);
