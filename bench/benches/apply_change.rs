//! Applying one change (a client's token rotated) to a data plane state holding 1k and 1M
//! clients: must cost O(change), so both sizes should match.
#![allow(clippy::unwrap_used)] // benches: a panic is the failure report

use canopy_bench::fixture;
use canopy_bench::harness::inproc;
use canopy_proto::v1 as pb;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use rand::Rng;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_change");
    for n in inproc::bench_sizes().unwrap() {
        let state = inproc::state_with(n).unwrap();
        let mut revision = state.applied_revision();
        let mut rng = rand::rng();
        g.bench_with_input(BenchmarkId::new("client_token_rotation", n), &n, |b, _| {
            b.iter_batched(
                || {
                    revision += 1;
                    let mut hash = vec![0u8; 32];
                    rng.fill(&mut hash[..]);
                    vec![pb::Change {
                        revision,
                        kind: Some(pb::change::Kind::ClientUpsert(pb::ClientState {
                            name: fixture::client_name(rng.random_range(0..n)),
                            tokens: vec![pb::TokenHash {
                                hash,
                                expires_at_ms: 0,
                            }],
                            allowed: vec![fixture::SERVER.into()],
                        })),
                    }]
                },
                |changes| state.apply_changes(changes).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
