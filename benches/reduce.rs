//! Reduction kernels: folding one checkpoint's gradients into the running VoG statistics, and
//! reading the scores out, for MNIST-sized (784) and CIFAR-sized colour (3×32×32) examples.
//!
//! `cargo bench --bench reduce`

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use vog_core::{resolve_windows, ChannelReduce, VogAccumulator, BUILTIN_WINDOWS};

fn gradients(rows: usize, len: usize) -> Vec<f32> {
    (0..rows * len)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
        .collect()
}

fn accumulate(c: &mut Criterion) {
    let names: Vec<String> = BUILTIN_WINDOWS.iter().map(|s| s.to_string()).collect();
    let k = 15;
    let (windows, _) = resolve_windows(k, &names, &Default::default()).unwrap();
    let rows = 64;
    let mut group = c.benchmark_group("vog_accumulate");
    for (name, shape) in [
        ("mnist_784", vec![784usize]),
        ("cifar_3x32x32", vec![3, 32, 32]),
    ] {
        let len: usize = shape.iter().product();
        let g = gradients(rows, len);
        let mut acc = VogAccumulator::new(&shape, &windows, k, ChannelReduce::Mean).unwrap();
        group.throughput(Throughput::Elements((rows * len * k) as u64));
        group.bench_with_input(BenchmarkId::new("batch64_k15", name), &g, |b, g| {
            b.iter(|| {
                acc.reset(rows);
                for ck in 0..k {
                    acc.add(ck, black_box(g)).unwrap();
                }
                black_box(acc.scores().unwrap())
            })
        });
    }
    // The benchmark comparison's MLP: three checkpoints, one window, vog's automatic batch. The
    // gradients are handed over as the engine does (owned buffers, fresh each batch), so these are
    // held and scored in one pass at the end.
    let (k, rows, shape) = (3, 256, vec![784usize]);
    let (windows, _) = resolve_windows(k, &["all".to_string()], &Default::default()).unwrap();
    let g = gradients(rows, 784);
    let mut acc = VogAccumulator::new(&shape, &windows, k, ChannelReduce::Mean).unwrap();
    group.throughput(Throughput::Elements((rows * 784 * k) as u64));
    group.bench_with_input(BenchmarkId::new("batch256_k3", "mnist_784"), &g, |b, g| {
        b.iter_batched(
            || vec![g.clone(); k],
            |gs| {
                acc.reset(rows);
                for (ck, g) in gs.into_iter().enumerate() {
                    acc.add_owned(ck, black_box(g)).unwrap();
                }
                black_box(acc.scores().unwrap())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, accumulate);
criterion_main!(benches);
