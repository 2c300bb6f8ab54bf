//! The harness itself: seeds pass, input layouts round-trip, mutations are deterministic, the
//! allocation counter counts, and the inputs fuzzing found stay fixed.

use pipeline_fuzz::alloc::{self, CountingAlloc};
use pipeline_fuzz::mutate::{self, Tok, lex, proto_fields, varint};
use pipeline_fuzz::rng::Rng;
use pipeline_fuzz::{
    Attributes, Target, consumer_input, rest_input, run_bounded, seeds, split_consumer_input,
    split_rest_input,
};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn every_seed_passes_every_invariant_within_the_bound() {
    for target in Target::ALL {
        let seeds = seeds::seeds(target).unwrap();
        assert!(
            seeds.len() >= 10,
            "{}: {} seeds",
            target.name(),
            seeds.len()
        );
        let mut accepted = 0;
        for (name, bytes) in &seeds {
            let (verdict, _) = std::panic::catch_unwind(|| run_bounded(target, bytes))
                .unwrap_or_else(|_| panic!("{}: seed {name} fails", target.name()));
            accepted += usize::from(verdict.accepted);
        }
        // The seeds reach past the first byte: some are good inputs.
        assert!(accepted >= 3, "{}: {accepted} accepted", target.name());
    }
}

#[test]
fn the_counting_allocator_counts_the_peak_not_the_sum() {
    assert!(alloc::counting());
    let (_, stats) = alloc::measure(|| {
        for _ in 0..4 {
            drop(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    });
    assert!(stats.peak >= 1 << 20 && stats.peak < 2 << 20, "{stats:?}");
    assert!(stats.total >= 4 << 20 && stats.count >= 4, "{stats:?}");
    assert_eq!(
        alloc::bound(1000),
        alloc::BASE_BYTES + 1000 * alloc::BYTES_PER_INPUT_BYTE
    );
}

#[test]
fn consumer_inputs_round_trip() {
    for attrs in [
        Attributes::AsProducer,
        Attributes::Absent,
        Attributes::SymbolOnly,
        Attributes::Explicit("BTCUSDT".into(), "stream".into()),
        Attributes::Explicit(String::new(), "x".repeat(255)),
    ] {
        for gap in [false, true] {
            let input = consumer_input(gap, &attrs, b"\x0a\x01A");
            assert_eq!(
                split_consumer_input(&input),
                (gap, attrs.clone(), &b"\x0a\x01A"[..])
            );
        }
    }
    // Explicit attributes cut short by the end of the input.
    assert_eq!(
        split_consumer_input(b"\x06\x05AB"),
        (
            false,
            Attributes::Explicit("AB".into(), String::new()),
            &b""[..]
        )
    );
}

#[test]
fn rest_inputs_round_trip() {
    let input = rest_input(
        429,
        &[("retry-after", "17"), ("x-mbx-used-weight-1m", "6001")],
        b"{}",
    );
    let (status, headers, body, skipped) = split_rest_input(&input);
    assert_eq!((status, body, skipped), (429, &b"{}"[..], 0));
    assert_eq!(headers["retry-after"], "17");
    assert_eq!(headers["x-mbx-used-weight-1m"], "6001");
    let plain = rest_input(200, &[], b"[]");
    let (status, headers, body, _) = split_rest_input(&plain);
    assert_eq!((status, headers.len(), body), (200, 0, &b"[]"[..]));
    // A line that is no header is skipped, not fatal.
    let (_, headers, _, skipped) = split_rest_input(b"\x01\xf4bad\nok: 1\n\nbody");
    assert_eq!((headers.len(), skipped), (1, 1));
}

#[test]
fn mutations_are_a_function_of_the_seed_and_respect_max_len() {
    for target in Target::ALL {
        let seeds = seeds::seeds(target).unwrap();
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..300)
                .map(|i| {
                    let a = &seeds[i % seeds.len()].1;
                    let b = &seeds[(i * 7) % seeds.len()].1;
                    mutate::mutate(target, &mut rng, a, b, 4096)
                })
                .collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7), "{}", target.name());
        assert_ne!(first, run(8), "{}", target.name());
        assert!(first.iter().all(|m| m.len() <= 4096));
        let changed = first
            .iter()
            .zip(seeds.iter().cycle())
            .filter(|(m, (_, s))| *m != s)
            .count();
        assert!(changed > 250, "{}: {changed} of 300 changed", target.name());
    }
}

#[test]
fn the_lexers_find_the_tokens_mutations_aim_at() {
    let toks = lex(br#"{"t":-12,"p":"1.5","m":true,"x":[1,{}]}"#);
    let kinds: Vec<Tok> = toks.iter().map(|t| t.tok).collect();
    assert_eq!(kinds.iter().filter(|&&k| k == Tok::Num).count(), 2);
    assert_eq!(kinds.iter().filter(|&&k| k == Tok::Str).count(), 5);
    assert_eq!(kinds.iter().filter(|&&k| k == Tok::Lit).count(), 1);
    let mut msg = vec![0x0a, 0x03];
    msg.extend_from_slice(b"BTC");
    msg.extend(varint(2 << 3));
    msg.extend(varint(u64::MAX));
    let fields = proto_fields(&msg);
    assert_eq!(fields.len(), 2);
    assert_eq!((fields[0].number, fields[0].wire, fields[0].end), (1, 2, 5));
    assert_eq!(
        (fields[1].number, fields[1].wire, fields[1].end),
        (2, 0, 16)
    );
}

/// Inputs the fuzzers found, kept as regressions (`docs/fuzzing.md`).
#[test]
fn found_inputs_stay_fixed() {
    // A Retry-After of u64::MAX seconds: the producer's `Instant::now() + wait` panicked.
    for status in [429, 418] {
        let input = rest_input(status, &[("retry-after", "18446744073709551615")], b"");
        run_bounded(Target::Rest, &input);
    }
}
