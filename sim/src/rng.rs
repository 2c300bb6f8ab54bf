//! Keyed, stable random numbers for the tape.
//!
//! The tape must be a pure function of `(seed, symbol, time)`, identical across runs, machines and
//! crate upgrades. So instead of a library RNG (whose stream may change between versions) we use
//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014), a
//! published, fixed algorithm, and derive one independent generator per *key* (seed, symbol, kind
//! of draw, bucket index) by hashing the key through the SplitMix64 finaliser.
//!
//! The distributions here are deliberately cheap (no transcendental functions per trade):
//! `normal_fast` is an Irwin-Hall approximation, good enough for prices and sizes in a simulator.

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a strong 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a symbol name, used as part of every key (FNV-1a, then mixed).
pub fn symbol_key(symbol: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in symbol.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

/// What a generator is used for; part of the key so different draws never share a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Per-minute counts and the minute's price step.
    Minute = 1,
    /// Per-minute split of counts into seconds and the per-second price bridge.
    Skeleton = 2,
    /// Per-second trade times, prices, sizes and sides.
    Second = 3,
    /// Fault decisions of one connection.
    Faults = 4,
    /// Random connection drops.
    Drops = 5,
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct KeyedRng {
    state: u64,
}

impl KeyedRng {
    /// A generator for the key `(seed, symbol, stream, index)`.
    pub fn new(seed: u64, symbol: u64, stream: Stream, index: i64) -> Self {
        let k = mix64(seed ^ GOLDEN);
        let k = mix64(k ^ symbol);
        let k = mix64(k ^ (stream as u64).wrapping_mul(GOLDEN));
        let k = mix64(k ^ (index as u64));
        Self { state: k }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)` (`n > 0`), by multiply-shift (bias below 2^-32 for our sizes).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Approximately standard normal: Irwin-Hall sum of four 16-bit uniforms, rescaled.
    /// Mean 0, variance 1, support about [-3.46, 3.46]; one 64-bit draw, no `ln`/`cos`.
    #[inline]
    pub fn normal_fast(&mut self) -> f64 {
        let x = self.next_u64();
        let s = (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48);
        // Each term is uniform on [0, 65535]: mean 4 * 32767.5, variance 4 * (65536^2 - 1) / 12.
        const MEAN: f64 = 4.0 * 32_767.5;
        const SD: f64 = 37_837.23; // sqrt(4 * (65536^2 - 1) / 12)
        (s as f64 - MEAN) / SD
    }

    /// Standard normal by Box-Muller (exact shape; used per minute, not per trade).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson-distributed count with mean `lambda` (Knuth below 30, normal approximation above).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u64;
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
            k
        } else {
            let x = lambda + lambda.sqrt() * self.normal() + 0.5;
            if x < 0.0 { 0 } else { x as u64 }
        }
    }

    /// Binomial(n, p): exact Bernoulli loop for small `n`, normal approximation above, clamped.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if n < 64 {
            (0..n).filter(|_| self.chance(p)).count() as u64
        } else {
            let mean = n as f64 * p;
            let sd = (mean * (1.0 - p)).sqrt();
            let x = mean + sd * self.normal() + 0.5;
            x.clamp(0.0, n as f64) as u64
        }
    }
}

/// Split `n` items over buckets with the given weights (multinomial by sequential binomials).
/// The result always sums to `n`.
pub fn multinomial(rng: &mut KeyedRng, n: u64, weights: &[f64], out: &mut [u64]) {
    debug_assert_eq!(weights.len(), out.len());
    let mut remaining = n;
    let mut weight_left: f64 = weights.iter().sum();
    let last = weights.len().saturating_sub(1);
    for (i, (w, slot)) in weights.iter().zip(out.iter_mut()).enumerate() {
        if i == last || remaining == 0 {
            *slot = if i == last { remaining } else { 0 };
            remaining -= *slot;
            continue;
        }
        let p = if weight_left > 0.0 {
            w / weight_left
        } else {
            0.0
        };
        let k = rng.binomial(remaining, p);
        *slot = k;
        remaining -= k;
        weight_left -= w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_different_keys_differ() {
        let a: Vec<u64> = {
            let mut r = KeyedRng::new(7, symbol_key("BTCUSDT"), Stream::Second, 42);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = KeyedRng::new(7, symbol_key("BTCUSDT"), Stream::Second, 42);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = KeyedRng::new(7, symbol_key("BTCUSDT"), Stream::Second, 43);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let d: Vec<u64> = {
            let mut r = KeyedRng::new(7, symbol_key("ARBUSDT"), Stream::Second, 42);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn splitmix_reference_value() {
        // SplitMix64 seeded with 0: the first output is the published reference 0xE220A8397B1DCDAF.
        let mut r = KeyedRng { state: 0 };
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn normal_fast_has_unit_moments() {
        let mut r = KeyedRng::new(1, 2, Stream::Second, 3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal_fast()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn poisson_mean_matches_lambda() {
        for lambda in [0.5, 3.0, 29.0, 35.0, 2100.0] {
            let mut r = KeyedRng::new(9, 9, Stream::Minute, lambda as i64);
            let n = 20_000;
            let total: u64 = (0..n).map(|_| r.poisson(lambda)).sum();
            let mean = total as f64 / n as f64;
            assert!(
                (mean - lambda).abs() < 0.05 * lambda + 0.05,
                "lambda {lambda} mean {mean}"
            );
        }
    }

    #[test]
    fn multinomial_sums_to_n() {
        let mut r = KeyedRng::new(3, 3, Stream::Skeleton, 0);
        let weights = [1.0, 5.0, 0.0, 2.0, 1.0];
        for n in [0u64, 1, 10, 63, 64, 1000, 1_000_000] {
            let mut out = [0u64; 5];
            multinomial(&mut r, n, &weights, &mut out);
            assert_eq!(out.iter().sum::<u64>(), n);
            assert_eq!(out[2], 0, "zero weight bucket got items for n={n}");
        }
    }
}
