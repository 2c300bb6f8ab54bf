//! Real archive lines (`tests/fixtures/archive/`, provenance in its `SOURCES.md`) through the
//! whole pure path: zip as Binance ships it, checksum, verify, unzip, parse, continuity.

use batch::archive::checksum::{Checksum, body_for};
use batch::archive::continuity::FileIds;
use batch::archive::row::{RowContext, parse_csv};
use batch::archive::unzip::{read_single_csv, zip_of};
use batch::archive::{ArchiveFile, Period};
use trade_proto::Trade;

const FETCHED_US: i64 = 1_764_806_400_000_000; // 2025-12-04T00:00:00Z

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/archive/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The trades of `csv`, read as the file `path` would be: zipped, checksummed, verified,
/// unzipped and parsed.
fn through_the_archive_path(path: &str, csv: &[u8]) -> Vec<Trade> {
    let file = ArchiveFile::parse_url_path(path).unwrap();
    let zip = zip_of(&[(&file.csv_name(), csv)]);
    let sum = Checksum::parse(&body_for(&zip, &file.file_name()), &file.file_name()).unwrap();
    sum.verify(&zip).unwrap();
    let body = read_single_csv(&zip, &file.file_name(), &file.csv_name(), 1 << 20).unwrap();
    assert_eq!(body, csv);
    let trades = parse_csv(&RowContext::for_file(&file, FETCHED_US), &body).unwrap();
    for t in &trades {
        assert_eq!(t.validate(), Ok(()), "{t:?}");
    }
    trades
}

fn trade(symbol: &str, id: i64, price: &str, qty: &str, time_us: i64, maker: bool) -> Trade {
    Trade {
        symbol: symbol.into(),
        trade_id: id,
        price: price.into(),
        quantity: qty.into(),
        trade_time: time_us,
        event_time: time_us,
        receive_time: FETCHED_US,
        buyer_is_maker: maker,
        source: "archive".into(),
    }
}

#[test]
fn btcusdt_2018_02_08_millisecond_lines_parse_exactly() {
    let trades = through_the_archive_path(
        "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip",
        &fixture("BTCUSDT-trades-2018-02-08.csv"),
    );
    assert_eq!(
        trades,
        [
            trade(
                "BTCUSDT",
                14_764_081,
                "7599.00000000",
                "0.22477000",
                1_518_048_000_016_000,
                true
            ),
            trade(
                "BTCUSDT",
                14_776_497,
                "7784.02000000",
                "0.00322700",
                1_518_049_694_685_000,
                true
            ),
        ]
    );
    // First and last line of the day only: the ids in between are (rightly) one hole.
    let ids = FileIds::from_ids(trades.iter().map(|t| t.trade_id))
        .unwrap()
        .unwrap();
    assert_eq!(ids.holes.len(), 1);
    assert_eq!(ids.holes[0].len(), 14_776_497 - 14_764_081 - 1);
}

#[test]
fn flmbtc_2020_10_01_a_false_buyer_maker_line_parses_exactly() {
    let trades = through_the_archive_path(
        "data/spot/daily/trades/FLMBTC/FLMBTC-trades-2020-10-01.zip",
        &fixture("FLMBTC-trades-2020-10-01.csv"),
    );
    assert_eq!(
        trades,
        [trade(
            "FLMBTC",
            252_195,
            "0.00005717",
            "383.00000000",
            1_601_560_817_800_000,
            false
        )]
    );
}

#[test]
fn a_2025_microsecond_line_keeps_its_microseconds() {
    // Constructed from a real 2025 kline line (see SOURCES.md); the real µs lines are below.
    let csv = fixture("DOGEUSDT-trades-2025-01-01.constructed.csv");
    let trades = through_the_archive_path(
        "data/spot/daily/trades/DOGEUSDT/DOGEUSDT-trades-2025-01-01.zip",
        &csv,
    );
    assert_eq!(
        trades,
        [trade(
            "DOGEUSDT",
            1,
            "0.31600000",
            "27.00000000",
            1_735_689_600_000_000,
            true
        )]
    );
    // The same line in a 2024 file is a unit error, not a far-future trade.
    let dec = ArchiveFile::new("DOGEUSDT", Period::Day("2024-12-31".parse().unwrap())).unwrap();
    let e = parse_csv(&RowContext::for_file(&dec, FETCHED_US), &csv).unwrap_err();
    assert_eq!((e.line, e.field), (1, "time"));
}

#[test]
fn a_real_line_in_the_wrong_days_file_is_refused() {
    // 2018-02-08's first trade, read as if it were in 2018-02-07's file.
    let f = ArchiveFile::new("BTCUSDT", Period::Day("2018-02-07".parse().unwrap())).unwrap();
    let e = parse_csv(
        &RowContext::for_file(&f, FETCHED_US),
        &fixture("BTCUSDT-trades-2018-02-08.csv"),
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.field, e.raw.as_str()),
        (1, "time", "1518048000016")
    );
}

#[test]
fn btcusdt_across_the_unit_switch_real_lines_parse_exactly() {
    // 2024-12-31 writes milliseconds, 2025-01-01 microseconds (real first lines of both files).
    let dec = through_the_archive_path(
        "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-12-31.zip",
        &fixture("BTCUSDT-trades-2024-12-31.csv"),
    );
    assert_eq!(
        dec,
        [
            trade(
                "BTCUSDT",
                4_356_587_539,
                "92792.05000000",
                "0.00129000",
                1_735_603_200_213_000,
                false
            ),
            trade(
                "BTCUSDT",
                4_356_587_540,
                "92792.05000000",
                "0.00018000",
                1_735_603_200_248_000,
                false
            ),
            trade(
                "BTCUSDT",
                4_356_587_541,
                "92792.05000000",
                "0.22829000",
                1_735_603_200_297_000,
                false
            ),
        ]
    );
    let jan = through_the_archive_path(
        "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.zip",
        &fixture("BTCUSDT-trades-2025-01-01.csv"),
    );
    let got: Vec<(i64, &str, &str, i64, bool)> = jan
        .iter()
        .map(|t| {
            (
                t.trade_id,
                t.price.as_str(),
                t.quantity.as_str(),
                t.trade_time,
                t.buyer_is_maker,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                4_359_935_386,
                "93576.00000000",
                "0.00136000",
                1_735_689_600_010_866,
                true
            ),
            (
                4_359_935_387,
                "93576.00000000",
                "0.00212000",
                1_735_689_600_074_095,
                true
            ),
            (
                4_359_935_388,
                "93576.00000000",
                "0.00154000",
                1_735_689_600_074_095,
                true
            ),
            (
                4_359_935_389,
                "93576.00000000",
                "0.00241000",
                1_735_689_600_091_046,
                true
            ),
            (
                4_359_935_390,
                "93576.00000000",
                "0.00545000",
                1_735_689_600_091_046,
                true
            ),
            (
                4_359_935_391,
                "93576.01000000",
                "0.00182000",
                1_735_689_600_266_955,
                false
            ),
        ]
    );
    // Consecutive ids: no hole inside the excerpt.
    let ids = FileIds::from_ids(jan.iter().map(|t| t.trade_id))
        .unwrap()
        .unwrap();
    assert!(ids.holes.is_empty(), "{:?}", ids.holes);
    // A microsecond time in a millisecond file is refused, not read as a far-future trade.
    let f = ArchiveFile::new("BTCUSDT", Period::Day("2024-12-31".parse().unwrap())).unwrap();
    let e = parse_csv(
        &RowContext::for_file(&f, FETCHED_US),
        &fixture("BTCUSDT-trades-2025-01-01.csv"),
    )
    .unwrap_err();
    assert_eq!((e.line, e.field), (1, "time"));
}
