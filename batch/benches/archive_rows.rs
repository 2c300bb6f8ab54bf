//! Unzip + parse of an archive file, in rows/s: a generated 100,000-row daily zip of
//! microsecond rows (the 2025+ format), deflated as Binance's are, read back into contract
//! trades with their id continuity checked.
//!
//! Run: `cargo bench -p batch --bench archive_rows -- --warm-up-time 1 --measurement-time 3`.

use std::fmt::Write as _;
use std::hint::black_box;

use batch::archive::continuity::FileIdsBuilder;
use batch::archive::row::{RowContext, for_each_row};
use batch::archive::unzip::{read_single_csv, zip_of};
use batch::archive::{ArchiveFile, Period};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: u64 = 100_000;

/// `ROWS` rows of one 2025 day with prices and quantities like BTCUSDT's.
fn csv(file: &ArchiveFile) -> String {
    let (start_us, _) = file.period.window_us();
    let mut s = String::with_capacity(ROWS as usize * 80);
    for i in 0..ROWS {
        let cents = 9_400_000 + (i * 7919) % 100_000;
        let sats = 1 + (i * 104_729) % 5_000_000;
        let _ = writeln!(
            s,
            "{},{}.{:02}000000,0.{:08},{}.{:08},{},{},True",
            4_360_000_000 + i,
            cents / 100,
            cents % 100,
            sats,
            (cents * sats) / 10_000_000_000,
            (cents * sats / 100) % 100_000_000,
            start_us + i as i64 * 800_000,
            if i % 3 == 0 { "True" } else { "False" },
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let file = ArchiveFile::new("BTCUSDT", Period::Day("2025-01-02".parse().unwrap())).unwrap();
    let body = csv(&file);
    let zip = zip_of(&[(&file.csv_name(), body.as_bytes())]);
    let name = file.file_name();
    let entry = file.csv_name();
    let mut g = c.benchmark_group("archive");
    g.throughput(Throughput::Elements(ROWS));
    g.bench_function("unzip_parse_100k_rows", |b| {
        b.iter(|| {
            let csv = read_single_csv(black_box(&zip), &name, &entry, 1 << 30).unwrap();
            let ctx = RowContext::for_file(&file, 1_764_806_400_000_000);
            let mut ids = FileIdsBuilder::default();
            let n = for_each_row(&ctx, &csv, |t| {
                ids.push(t.trade_id).unwrap();
                black_box(t);
            })
            .unwrap();
            assert_eq!(n, ROWS);
            black_box(ids.finish())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
