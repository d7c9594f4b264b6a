//! Zipf-distributed key indexes for skewed reads (`--key_dist=zipf`).
//!
//! The method is Gray et al.'s ("Quickly Generating Billion-Record Synthetic
//! Databases", SIGMOD 1994), the one YCSB's `ZipfianGenerator` uses: after computing
//! `zeta(n, theta) = sum_{i=1..n} i^-theta` once, each draw maps one uniform number to
//! a rank in O(1), so a draw stays a pure function of the operation's uniform word
//! (operation `i` reads the same key however the work is split). Rank 0 is the
//! hottest. Ranks are then spread over the key space by a bijection
//! (`rank * a + b mod n` with `a` coprime to `n`), so the hot keys are scattered over
//! many blocks and files, as hot state keys are, rather than packed at the start of
//! the key space.
//!
//! Valid for `0 < theta < 1` (YCSB's default and ours is 0.99). `zeta` is summed
//! exactly up to [`EXACT_ZETA_TERMS`] and continued with its integral beyond, which
//! is accurate to far better than a part in a million there.

/// Terms of `zeta(n, theta)` summed exactly; the tail is integrated.
pub const EXACT_ZETA_TERMS: u64 = 10_000_000;

/// A Zipf(theta) distribution over ranks `0..n`, scattered over key indexes `0..n`.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    half_pow_theta: f64,
    scatter_mul: u64,
    scatter_add: u64,
}

/// `sum_{i=1..n} i^-theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    let exact = n.min(EXACT_ZETA_TERMS);
    let mut sum = 0.0;
    for i in 1..=exact {
        sum += (i as f64).powf(-theta);
    }
    if n > exact {
        // Integral of x^-theta from exact + 0.5 to n + 0.5 (midpoint continuation).
        let f = |x: f64| x.powf(1.0 - theta) / (1.0 - theta);
        sum += f(n as f64 + 0.5) - f(exact as f64 + 0.5);
    }
    sum
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Zipf {
    /// Zipf(theta) over `n` keys. `theta` must be in (0, 1) and `n` at least 1.
    pub fn new(n: u64, theta: f64) -> Result<Zipf, String> {
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!("zipf theta {theta} must be in (0, 1)"));
        }
        let n = n.max(1);
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2.min(n), theta);
        let eta = if n > 1 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            0.0
        };
        // A multiplier near n / golden ratio, made coprime to n: a bijection of 0..n.
        let mut scatter_mul = ((n as f64 / 1.618_033_988_749_895) as u64).max(1);
        while gcd(scatter_mul, n) != 1 {
            scatter_mul += 1;
        }
        Ok(Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
            half_pow_theta: 0.5f64.powf(theta),
            scatter_mul: scatter_mul % n,
            scatter_add: n / 3,
        })
    }

    /// The rank (0 = hottest) for a uniform `u` in [0, 1).
    pub fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + self.half_pow_theta {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }

    /// The key index of rank `rank`.
    pub fn scatter(&self, rank: u64) -> u64 {
        ((u128::from(rank) * u128::from(self.scatter_mul) + u128::from(self.scatter_add))
            % u128::from(self.n)) as u64
    }

    /// The key index for a uniform 64-bit `word` (e.g. `KeyDraw::word(i)`).
    pub fn index(&self, word: u64) -> u64 {
        let u = (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        self.scatter(self.rank(u))
    }

    /// The skew.
    pub fn theta(&self) -> f64 {
        self.theta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::keys::mix64;

    #[test]
    fn ranks_follow_zipf() {
        let n = 100_000;
        let z = Zipf::new(n, 0.99).unwrap();
        let draws = 400_000u64;
        let mut counts = vec![0u64; n as usize];
        for i in 0..draws {
            let u = (mix64(i) >> 11) as f64 / (1u64 << 53) as f64;
            counts[z.rank(u) as usize] += 1;
        }
        // P(rank 0) = 1 / zeta(n): about 8% here.
        let p0 = 1.0 / zeta(n, 0.99);
        let got0 = counts[0] as f64 / draws as f64;
        assert!((got0 - p0).abs() < 0.01, "rank 0: {got0} vs {p0}");
        // The top 1% of ranks take a large share; ranks fall off with rank.
        let top: u64 = counts[..1000].iter().sum();
        assert!(top as f64 / draws as f64 > 0.5, "top 1%: {top}");
        assert!(counts[0] > counts[10] && counts[10] > counts[1000]);
    }

    #[test]
    fn scatter_is_a_bijection() {
        for n in [1u64, 2, 10, 97, 1000, 4096] {
            let z = Zipf::new(n, 0.9).unwrap();
            let mut seen = vec![false; n as usize];
            for r in 0..n {
                let k = z.scatter(r) as usize;
                assert!(!seen[k], "n {n}: {k} twice");
                seen[k] = true;
            }
        }
    }

    #[test]
    fn zeta_tail_matches_the_exact_sum() {
        // Compare the integral continuation against an exact sum past the cut-over.
        let theta = 0.99;
        let n = 1_000_000u64;
        let exact: f64 = (1..=n).map(|i| (i as f64).powf(-theta)).sum();
        let head: f64 = (1..=1000u64).map(|i| (i as f64).powf(-theta)).sum();
        let f = |x: f64| x.powf(1.0 - theta) / (1.0 - theta);
        let approx = head + f(n as f64 + 0.5) - f(1000.5);
        assert!((approx - exact).abs() / exact < 1e-6, "{approx} vs {exact}");
        assert!(Zipf::new(10, 1.0).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
    }
}
