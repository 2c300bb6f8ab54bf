//! `fuzz-smoke`: a stable, seeded, mutational fuzz runner for the `pipeline-fuzz` targets.
//!
//! Seeds come from the repository's fixtures (and `--corpus` directories, e.g. a cargo-fuzz
//! corpus); each input is a mutation of one in the pool ([`pipeline_fuzz::mutate`]); an input
//! whose verdict class was never seen joins the pool (feedback from outcomes, not coverage).
//! The sequence of inputs is a function of `--seed`. Every input runs under a counting
//! allocator: a panic (code under test, or an `invariant:` of the target) or more live heap
//! than `alloc::bound(len)` fails the run; the input is saved with a command reproducing it. A
//! watchdog saves and fails an input that runs longer than `--timeout-secs`.
//!
//! ```text
//! fuzz-smoke [--target T]... [--secs S] [--runs N] [--seed N] [--max-len N] [--corpus DIR]...
//!            [--failures DIR] [--max-failures N] [--timeout-secs N] [--classes N]
//! fuzz-smoke --target T --repro FILE...
//! fuzz-smoke --write-corpus DIR
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use pipeline_fuzz::alloc::{self, AllocStats, CountingAlloc};
use pipeline_fuzz::rng::{Rng, fnv1a};
use pipeline_fuzz::{Target, Verdict, mutate, seeds};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str = "\
usage: fuzz-smoke [--target T]... [--secs S] [--runs N] [--seed N] [--max-len N]
                  [--corpus DIR]... [--failures DIR] [--max-failures N] [--timeout-secs N]
                  [--classes N]
       fuzz-smoke --target T --repro FILE...
       fuzz-smoke --write-corpus DIR
targets: frame, consumer, rest, rest_rows (default: all)
--secs S: seconds per target (default 10); --runs N: inputs per target (default: no limit);
the first limit reached ends a target.";

struct Options {
    targets: Vec<Target>,
    secs: f64,
    runs: Option<u64>,
    seed: u64,
    max_len: usize,
    corpus: Vec<PathBuf>,
    failures: PathBuf,
    max_failures: usize,
    timeout: Duration,
    classes: usize,
    repro: Vec<PathBuf>,
    write_corpus: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Options> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| seeds::repo_root().join("target"));
    let mut o = Options {
        targets: Vec::new(),
        secs: 10.0,
        runs: None,
        seed: 1,
        max_len: 128 * 1024,
        corpus: Vec::new(),
        failures: target_dir.join("fuzz-failures"),
        max_failures: 5,
        timeout: Duration::from_secs(10),
        classes: 12,
        repro: Vec::new(),
        write_corpus: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--target" => {
                let v = value()?;
                o.targets
                    .push(Target::from_name(&v).with_context(|| format!("unknown target {v:?}"))?);
            }
            "--secs" => o.secs = value()?.parse().context("--secs")?,
            "--runs" => o.runs = Some(value()?.parse().context("--runs")?),
            "--seed" => o.seed = value()?.parse().context("--seed")?,
            "--max-len" => o.max_len = value()?.parse().context("--max-len")?,
            "--corpus" => o.corpus.push(value()?.into()),
            "--failures" => o.failures = value()?.into(),
            "--max-failures" => o.max_failures = value()?.parse().context("--max-failures")?,
            "--timeout-secs" => {
                o.timeout = Duration::from_secs(value()?.parse().context("--timeout-secs")?)
            }
            "--classes" => o.classes = value()?.parse().context("--classes")?,
            "--repro" => {
                o.repro.push(value()?.into());
                o.repro.extend(args.by_ref().map(PathBuf::from));
            }
            "--write-corpus" => o.write_corpus = Some(value()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if o.targets.is_empty() {
        o.targets = Target::ALL.to_vec();
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Panics and the watchdog
// ---------------------------------------------------------------------------------------------

static LAST_PANIC: Mutex<String> = Mutex::new(String::new());
/// Milliseconds since the epoch when the current input started; 0 when none runs.
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
/// The current input (target name, bytes), for the watchdog.
static CURRENT: Mutex<(&str, Vec<u8>)> = Mutex::new(("", Vec::new()));

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn start_watchdog(timeout: Duration, failures: PathBuf) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let started = STARTED_MS.load(Ordering::Relaxed);
            if started != 0 && now_ms().saturating_sub(started) > timeout.as_millis() as u64 {
                let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
                let (name, input) = (current.0, current.1.clone());
                let path = save(&failures, name, &input);
                eprintln!(
                    "FAIL {name}: one input ran over {} s (hang or super-linear time)\n  {}",
                    timeout.as_secs(),
                    describe_saved(name, &input, &path)
                );
                std::process::exit(3);
            }
        }
    });
}

fn save(dir: &Path, target: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{target}-{:016x}.bin", fnv1a(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

fn describe_saved(target: &str, input: &[u8], path: &std::io::Result<PathBuf>) -> String {
    match path {
        Ok(p) => format!(
            "input ({} bytes) saved to {}\n  reproduce: cargo run -p pipeline-fuzz --bin fuzz-smoke -- --target {target} --repro {}\n         or: (cd fuzz && cargo fuzz run -s none {target} {})",
            input.len(),
            p.display(),
            p.display(),
            p.display()
        ),
        Err(e) => format!(
            "input ({} bytes) could not be saved ({e}): {:?}",
            input.len(),
            String::from_utf8_lossy(&input[..input.len().min(300)])
        ),
    }
}

/// What one input did: the verdict and its allocations, or the failure.
enum Run {
    Ok(Verdict, AllocStats),
    Failed(String, AllocStats),
}

fn run_one(target: Target, input: &[u8]) -> Run {
    {
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        current.0 = target.name();
        current.1.clear();
        current.1.extend_from_slice(input);
    }
    STARTED_MS.store(now_ms(), Ordering::Relaxed);
    let (result, stats) =
        alloc::measure(|| panic::catch_unwind(AssertUnwindSafe(|| target.run(input))));
    STARTED_MS.store(0, Ordering::Relaxed);
    match result {
        Ok(verdict) => {
            let bound = alloc::bound(input.len());
            if stats.peak > bound {
                Run::Failed(
                    format!(
                        "held {} live heap bytes for a {}-byte input (bound {bound})",
                        stats.peak,
                        input.len()
                    ),
                    stats,
                )
            } else {
                Run::Ok(verdict, stats)
            }
        }
        Err(_) => {
            let msg = std::mem::take(&mut *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()));
            Run::Failed(format!("panicked: {msg}"), stats)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One target's run
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    runs: u64,
    accepted: u64,
    classes: HashMap<(bool, Cow<'static, str>), u64>,
    max_peak: usize,
    max_peak_len: usize,
    max_ratio: f64,
    max_total: u64,
    slowest: Duration,
    failures: Vec<String>,
    seeds: usize,
    pool: usize,
    elapsed: Duration,
}

fn load_dir(dir: &Path, out: &mut Vec<Vec<u8>>) -> anyhow::Result<()> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    for p in paths {
        out.push(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(())
}

fn fuzz_target(target: Target, o: &Options) -> anyhow::Result<Report> {
    let mut pool: Vec<Vec<u8>> = seeds::seeds(target)
        .context("reading the fixtures")?
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    for dir in &o.corpus {
        let sub = dir.join(target.name());
        if sub.is_dir() {
            load_dir(&sub, &mut pool)?;
        }
    }
    pool.iter_mut().for_each(|b| b.truncate(o.max_len));
    let mut r = Report {
        seeds: pool.len(),
        ..Report::default()
    };
    let mut rng = Rng::new(o.seed ^ fnv1a(target.name().as_bytes()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(o.secs);
    let mut next_seed = 0;
    loop {
        if o.runs.is_some_and(|n| r.runs >= n)
            || (r.runs.is_multiple_of(32) && Instant::now() >= deadline)
            || r.failures.len() >= o.max_failures
        {
            break;
        }
        // The seeds first, as they are; then mutations.
        let input = if next_seed < r.seeds {
            next_seed += 1;
            pool[next_seed - 1].clone()
        } else {
            let parent = rng.below(pool.len());
            let other = rng.below(pool.len());
            mutate::mutate(target, &mut rng, &pool[parent], &pool[other], o.max_len)
        };
        let t0 = Instant::now();
        let outcome = run_one(target, &input);
        r.slowest = r.slowest.max(t0.elapsed());
        r.runs += 1;
        let stats = match &outcome {
            Run::Ok(_, s) | Run::Failed(_, s) => *s,
        };
        if stats.peak > r.max_peak {
            r.max_peak = stats.peak;
            r.max_peak_len = input.len();
        }
        r.max_total = r.max_total.max(stats.total);
        if input.len() >= 1024 {
            r.max_ratio = r.max_ratio.max(stats.peak as f64 / input.len() as f64);
        }
        match outcome {
            Run::Ok(verdict, _) => {
                r.accepted += u64::from(verdict.accepted);
                let count = r
                    .classes
                    .entry((verdict.accepted, verdict.class))
                    .or_insert(0);
                *count += 1;
                // A new kind of outcome joins the pool, and now and then anything does.
                let admit = *count == 1 && next_seed >= r.seeds || rng.one_in(2000);
                if admit && next_seed >= r.seeds {
                    if pool.len() < 8192 {
                        pool.push(input);
                    } else {
                        let slot = r.seeds + rng.below(pool.len() - r.seeds);
                        pool[slot] = input;
                    }
                }
            }
            Run::Failed(msg, _) => {
                let path = save(&o.failures, target.name(), &input);
                let text = format!(
                    "FAIL {}: {msg}\n  {}",
                    target.name(),
                    describe_saved(target.name(), &input, &path)
                );
                eprintln!("{text}");
                r.failures.push(text);
            }
        }
    }
    r.elapsed = started.elapsed();
    r.pool = pool.len();
    Ok(r)
}

fn kib(n: usize) -> String {
    if n >= 10 * 1024 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

fn print_report(target: Target, r: &Report, top: usize) {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let pct = |n: u64| 100.0 * n as f64 / r.runs.max(1) as f64;
    println!(
        "{}: {} inputs in {:.1} s ({:.0}/s); pool {} ({} seeds); {} failure(s)",
        target.name(),
        r.runs,
        secs,
        r.runs as f64 / secs,
        r.pool,
        r.seeds,
        r.failures.len()
    );
    println!(
        "  accepted {:.1}% ({}), rejected {:.1}% ({}); {} distinct outcome classes",
        pct(r.accepted),
        r.accepted,
        pct(r.runs - r.accepted),
        r.runs - r.accepted,
        r.classes.len()
    );
    println!(
        "  heap per input: max peak {} (for a {}-byte input), max {:.1} B live per input byte \
         (inputs >= 1 KiB), max {} allocated in total; bound {} + {} B per input byte; \
         slowest input {:.1} ms",
        kib(r.max_peak),
        r.max_peak_len,
        r.max_ratio,
        kib(r.max_total as usize),
        kib(alloc::BASE_BYTES),
        alloc::BYTES_PER_INPUT_BYTE,
        r.slowest.as_secs_f64() * 1e3
    );
    let mut classes: Vec<_> = r.classes.iter().collect();
    classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for ((accepted, class), n) in classes.iter().take(top) {
        println!(
            "    {:>5.1}% {:>9}  {:<8}  {class}",
            pct(**n),
            n,
            if *accepted { "accepted" } else { "rejected" }
        );
    }
    if classes.len() > top {
        println!("    ... {} more classes", classes.len() - top);
    }
}

fn repro(o: &Options) -> anyhow::Result<bool> {
    let [target] = o.targets[..] else {
        bail!("--repro needs exactly one --target");
    };
    let mut ok = true;
    for path in &o.repro {
        let input = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        match run_one(target, &input) {
            Run::Ok(v, s) => println!(
                "{}: {} {} ({} bytes, peak heap {} B, {} allocations)",
                path.display(),
                if v.accepted { "accepted" } else { "rejected" },
                v.class,
                input.len(),
                s.peak,
                s.count
            ),
            Run::Failed(msg, _) => {
                ok = false;
                println!("{}: FAIL {msg}", path.display());
            }
        }
    }
    Ok(ok)
}

fn write_corpus(dir: &Path) -> anyhow::Result<()> {
    for target in Target::ALL {
        let sub = dir.join(target.name());
        std::fs::create_dir_all(&sub)?;
        let seeds = seeds::seeds(target)?;
        for (_, bytes) in &seeds {
            std::fs::write(sub.join(format!("seed-{:016x}", fnv1a(bytes))), bytes)?;
        }
        println!(
            "{}: {} seeds in {}",
            target.name(),
            seeds.len(),
            sub.display()
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string();
    }));
    if !alloc::counting() {
        bail!("the counting allocator is not installed");
    }
    if let Some(dir) = &o.write_corpus {
        return write_corpus(dir);
    }
    if !o.repro.is_empty() {
        if !repro(&o)? {
            std::process::exit(1);
        }
        return Ok(());
    }
    start_watchdog(o.timeout, o.failures.clone());
    println!(
        "fuzz-smoke: seed {}, {} s{} per target, inputs up to {} bytes",
        o.seed,
        o.secs,
        o.runs
            .map(|n| format!(" or {n} inputs"))
            .unwrap_or_default(),
        o.max_len
    );
    let mut total = 0;
    let mut failures = 0;
    for &target in &o.targets {
        let r = fuzz_target(target, &o)?;
        print_report(target, &r, o.classes);
        total += r.runs;
        failures += r.failures.len();
    }
    let verdict = if failures == 0 {
        "nothing panicked, broke an invariant or held more heap than its bound"
    } else {
        "see FAIL above"
    };
    println!(
        "fuzz-smoke: {} target(s), {total} inputs, {failures} failure(s): {verdict}",
        o.targets.len()
    );
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
