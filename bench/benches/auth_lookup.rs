//! Auth lookup (bearer token → client) at 1k and 1M clients: keyed BLAKE3 hash + token
//! index lookup, and the index lookup alone. Tokens are drawn at random from all clients
//! so the 1M case pays its cache misses. `plain_map_prehashed` is the floor: the cheapest
//! map from a token hash to a client number (std `HashMap`, nothing else), same sizes.
#![allow(clippy::unwrap_used)] // benches: a panic is the failure report

use canopy_bench::fixture;
use canopy_bench::harness::inproc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::Rng;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth_lookup");
    g.throughput(Throughput::Elements(1));
    for n in inproc::bench_sizes().unwrap() {
        let state = inproc::state_with(n).unwrap();
        let view = state.load_view().unwrap();
        let mut rng = rand::rng();
        let tokens: Vec<String> = (0..200_000)
            .map(|_| fixture::client_token(rng.random_range(0..n)))
            .collect();
        let hashes: Vec<_> = tokens.iter().map(|t| view.hasher.hash(t)).collect();
        let now = 1;
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("hash_and_lookup", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % tokens.len();
                let h = view.hasher.hash(black_box(&tokens[i]));
                black_box(view.tokens.lookup(&h, now).is_some())
            })
        });
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("lookup_prehashed", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % hashes.len();
                black_box(view.tokens.lookup(black_box(&hashes[i]), now).is_some())
            })
        });
        let plain = inproc::PlainIndex::with(n);
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("plain_map_prehashed", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % hashes.len();
                black_box(plain.lookup_prehashed(black_box(&hashes[i])).is_some())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
