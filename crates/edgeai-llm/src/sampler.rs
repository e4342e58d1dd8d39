//! Sampling: llama.cpp's chain order — penalties (repetition / frequency / presence over the
//! last `penalty_last_n` tokens), top-k, top-p, min-p, temperature, then a seeded draw.
//! Temperature `<= 0` is greedy (argmax after penalties).
//!
//! ```
//! use edgeai_llm::sampler::{Sampler, SamplerConfig};
//!
//! let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
//! assert_eq!(s.sample(&[0.1, 3.0, -1.0]).unwrap(), 1);
//! ```

use crate::{Error, Result};

/// Sampler settings (llama.cpp's defaults where it has them).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Temperature; `<= 0` means greedy.
    pub temperature: f32,
    /// Keep the `k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `p` (1 = off).
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the best's (0 = off).
    pub min_p: f32,
    /// Repetition penalty (1 = off): positive logits divided, negative multiplied.
    pub repeat_penalty: f32,
    /// Subtracted `count` times per occurrence in the window (0 = off).
    pub frequency_penalty: f32,
    /// Subtracted once from tokens present in the window (0 = off).
    pub presence_penalty: f32,
    /// Window of past tokens the penalties look at (0 = none).
    pub penalty_last_n: usize,
    /// Seed of the random draw.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding, no penalties.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(format!("sampler: {what}")));
        if !self.temperature.is_finite() {
            return bad("temperature must be finite");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat_penalty must be > 0");
        }
        if !self.frequency_penalty.is_finite() || !self.presence_penalty.is_finite() {
            return bad("penalties must be finite");
        }
        Ok(())
    }
}

/// A small PCG32 generator (O'Neill), seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    inc: u64,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut r = Self {
            state: next(),
            inc: next() | 1,
        };
        r.next_u32();
        r
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

/// A candidate token during sampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Its (adjusted) logit.
    pub logit: f32,
    /// Its probability (filled by the stages that need it).
    pub p: f32,
}

/// The sampler: settings, RNG, recent-token window and reusable buffers.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    history: Vec<u32>,
    cands: Vec<Candidate>,
    counts: Vec<(u32, u32)>,
}

impl Sampler {
    /// A sampler; an error for out-of-range settings.
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            rng: Rng::new(cfg.seed),
            cfg,
            history: Vec::new(),
            cands: Vec::new(),
            counts: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Records a token in the penalty window (prompt tokens and sampled tokens).
    pub fn accept(&mut self, id: u32) {
        let n = self.cfg.penalty_last_n;
        if n == 0 {
            return;
        }
        if self.history.len() >= n {
            let drop = self.history.len() + 1 - n;
            self.history.drain(..drop);
        }
        self.history.push(id);
    }

    /// Forgets the penalty window and reseeds.
    pub fn reset(&mut self) {
        self.history.clear();
        self.rng = Rng::new(self.cfg.seed);
    }

    /// Picks the next token from `logits` (one per vocabulary entry) and records it.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::InvalidArgument("sampler: empty logits".into()));
        }
        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                logit: if l.is_nan() { f32::NEG_INFINITY } else { l },
                p: 0.0,
            }));
        let mut cands = std::mem::take(&mut self.cands);
        self.apply_penalties(&mut cands);
        let id = if self.cfg.temperature <= 0.0 {
            argmax(&cands)
        } else {
            top_k(&mut cands, self.cfg.top_k);
            top_p(&mut cands, self.cfg.top_p);
            min_p(&mut cands, self.cfg.min_p);
            temperature(&mut cands, self.cfg.temperature);
            draw(&mut cands, self.rng.next_f32())
        };
        self.cands = cands;
        self.accept(id);
        Ok(id)
    }

    /// Penalty stage over the candidate list (indexed by id: call before any reordering).
    pub fn apply_penalties(&mut self, cands: &mut [Candidate]) {
        let c = &self.cfg;
        if self.history.is_empty()
            || (c.repeat_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0)
        {
            return;
        }
        self.counts.clear();
        for &t in &self.history {
            match self.counts.iter_mut().find(|(id, _)| *id == t) {
                Some((_, n)) => *n += 1,
                None => self.counts.push((t, 1)),
            }
        }
        for &(id, n) in &self.counts {
            if let Some(cd) = cands.get_mut(id as usize) {
                if cd.logit > 0.0 {
                    cd.logit /= c.repeat_penalty;
                } else {
                    cd.logit *= c.repeat_penalty;
                }
                cd.logit -= n as f32 * c.frequency_penalty + c.presence_penalty;
            }
        }
    }
}

fn argmax(cands: &[Candidate]) -> u32 {
    let mut best = 0;
    for (i, c) in cands.iter().enumerate() {
        if c.logit > cands[best].logit {
            best = i;
        }
    }
    cands[best].id
}

fn sort_desc(cands: &mut [Candidate]) {
    cands.sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit));
}

/// Keeps the `k` largest logits, sorted descending (`k = 0`: all, sorted).
pub fn top_k(cands: &mut Vec<Candidate>, k: usize) {
    if k > 0 && k < cands.len() {
        cands.select_nth_unstable_by(k - 1, |a, b| b.logit.total_cmp(&a.logit));
        cands.truncate(k);
    }
    sort_desc(cands);
}

/// Softmax of the logits into `p` (candidates sorted descending).
pub fn softmax(cands: &mut [Candidate]) {
    let max = cands.first().map_or(0.0, |c| c.logit);
    let mut sum = 0.0f32;
    for c in cands.iter_mut() {
        c.p = (c.logit - max).exp();
        sum += c.p;
    }
    if sum > 0.0 {
        for c in cands.iter_mut() {
            c.p /= sum;
        }
    }
}

/// Keeps the smallest prefix whose probability reaches `p` (at least one token).
pub fn top_p(cands: &mut Vec<Candidate>, p: f32) {
    if p >= 1.0 || cands.is_empty() {
        return;
    }
    sort_desc(cands);
    softmax(cands);
    let mut cum = 0.0;
    let mut keep = cands.len();
    for (i, c) in cands.iter().enumerate() {
        cum += c.p;
        if cum >= p {
            keep = i + 1;
            break;
        }
    }
    cands.truncate(keep.max(1));
}

/// Drops tokens whose probability is below `min_p` times the best's (at least one kept).
pub fn min_p(cands: &mut Vec<Candidate>, min_p: f32) {
    if min_p <= 0.0 || cands.is_empty() {
        return;
    }
    sort_desc(cands);
    let threshold = cands[0].logit + min_p.ln();
    let keep = cands.iter().take_while(|c| c.logit >= threshold).count();
    cands.truncate(keep.max(1));
}

/// Divides the logits by `t`.
pub fn temperature(cands: &mut [Candidate], t: f32) {
    if t > 0.0 {
        for c in cands.iter_mut() {
            c.logit /= t;
        }
    }
}

/// Draws one candidate with probability softmax(logit) using `u` in `[0, 1)`.
pub fn draw(cands: &mut [Candidate], u: f32) -> u32 {
    sort_desc(cands);
    softmax(cands);
    let mut cum = 0.0;
    for c in cands.iter() {
        cum += c.p;
        if u < cum {
            return c.id;
        }
    }
    cands.last().map_or(0, |c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(logits: &[f32]) -> Vec<Candidate> {
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
                p: 0.0,
            })
            .collect()
    }

    fn ids(c: &[Candidate]) -> Vec<u32> {
        c.iter().map(|c| c.id).collect()
    }

    #[test]
    fn greedy_picks_argmax_and_penalties_change_it() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&[1.0, 5.0, 4.0]).unwrap(), 1);
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        s.accept(1);
        // 5 / 2 = 2.5 < 4.
        assert_eq!(s.sample(&[1.0, 5.0, 4.0]).unwrap(), 2);
    }

    #[test]
    fn penalty_stage_values() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            penalty_last_n: 3,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        for t in [0, 0, 1, 1] {
            s.accept(t);
        }
        // Window of 3: [0, 1, 1].
        let mut c = cands(&[4.0, -2.0, 3.0]);
        s.apply_penalties(&mut c);
        assert_eq!(c[0].logit, 4.0 / 2.0 - 0.5 - 0.25);
        assert_eq!(c[1].logit, -2.0 * 2.0 - 1.0 - 0.25);
        assert_eq!(c[2].logit, 3.0);
    }

    #[test]
    fn top_k_keeps_k_largest_sorted() {
        let mut c = cands(&[0.0, 3.0, 1.0, 2.0, -1.0]);
        top_k(&mut c, 3);
        assert_eq!(ids(&c), vec![1, 3, 2]);
        let mut c = cands(&[0.0, 3.0]);
        top_k(&mut c, 0);
        assert_eq!(ids(&c), vec![1, 0]);
    }

    #[test]
    fn top_p_keeps_smallest_covering_set() {
        // probs ~ 0.665, 0.245, 0.090
        let mut c = cands(&[2.0, 1.0, 0.0]);
        top_p(&mut c, 0.5);
        assert_eq!(ids(&c), vec![0]);
        let mut c = cands(&[2.0, 1.0, 0.0]);
        top_p(&mut c, 0.8);
        assert_eq!(ids(&c), vec![0, 1]);
        let mut c = cands(&[2.0, 1.0, 0.0]);
        top_p(&mut c, 1.0);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn min_p_drops_relative_tail() {
        // p ratios vs best: 1, e^-1 = 0.37, e^-3 = 0.05
        let mut c = cands(&[0.0, -1.0, -3.0]);
        min_p(&mut c, 0.1);
        assert_eq!(ids(&c), vec![0, 1]);
        let mut c = cands(&[0.0, -1.0, -3.0]);
        min_p(&mut c, 0.5);
        assert_eq!(ids(&c), vec![0]);
    }

    #[test]
    fn temperature_scales_and_draw_follows_cdf() {
        let mut c = cands(&[2.0, 1.0]);
        temperature(&mut c, 0.5);
        assert_eq!(c[0].logit, 4.0);
        let mut c = cands(&[0.0, 0.0, 0.0, 0.0]);
        assert_eq!(draw(&mut c, 0.0), c[0].id);
        let mut c = cands(&[0.0, 0.0, 0.0, 0.0]);
        let last = draw(&mut c, 0.99);
        assert_eq!(last, c[3].id);
    }

    #[test]
    fn draw_frequencies_match_softmax() {
        let logits = [1.0f32, 0.0, -1.0];
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            penalty_last_n: 0,
            seed: 42,
            ..SamplerConfig::default()
        })
        .unwrap();
        let mut counts = [0usize; 3];
        let n = 20_000;
        for _ in 0..n {
            counts[s.sample(&logits).unwrap() as usize] += 1;
        }
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        for i in 0..3 {
            let want = logits[i].exp() / z;
            let got = counts[i] as f32 / n as f32;
            assert!((want - got).abs() < 0.02, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                seed,
                ..SamplerConfig::default()
            })
            .unwrap();
            (0..30)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn rejects_bad_settings() {
        for cfg in [
            SamplerConfig {
                top_p: 0.0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                min_p: 2.0,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                temperature: f32::NAN,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                repeat_penalty: 0.0,
                ..SamplerConfig::default()
            },
        ] {
            assert!(Sampler::new(cfg).is_err());
        }
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert!(s.sample(&[]).is_err());
    }
}
