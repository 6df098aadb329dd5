//! Choosing the next token from the logits: greedy at temperature 0, otherwise softmax with
//! temperature and nucleus (top-p) sampling, from a seeded generator.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Draws tokens; the same seed and logits give the same tokens.
pub(crate) struct Sampler {
    rng: StdRng,
    temperature: f32,
    top_p: f32,
    /// Ids at or above this are not in the tokenizer's vocabulary (embedding padding) and are
    /// never chosen.
    vocab_size: usize,
}

/// Below this temperature sampling is greedy.
const GREEDY_BELOW: f32 = 1e-4;

impl Sampler {
    pub fn new(seed: u64, temperature: f32, top_p: f32, vocab_size: usize) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            temperature,
            top_p,
            vocab_size,
        }
    }

    /// The next token, or `None` when the logits hold no finite value.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        let n = logits.len().min(self.vocab_size.max(1));
        let logits = &logits[..n];
        let (best, best_logit) = logits
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .fold(None, |acc: Option<(usize, f32)>, (i, l)| match acc {
                Some((_, b)) if b >= l => acc,
                _ => Some((i, l)),
            })?;
        if self.temperature < GREEDY_BELOW {
            return u32::try_from(best).ok();
        }
        // Softmax over the finite logits, shifted by the largest for stability.
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .filter_map(|(i, l)| {
                let p = ((l - best_logit) / self.temperature).exp();
                (p > 0.0).then(|| u32::try_from(i).ok().map(|i| (i, p)))?
            })
            .collect();
        let total: f32 = probs.iter().map(|(_, p)| p).sum();
        if !(total.is_finite() && total > 0.0) {
            return u32::try_from(best).ok();
        }
        if self.top_p < 1.0 {
            probs = nucleus(probs, total * self.top_p);
        }
        let mass: f32 = probs.iter().map(|(_, p)| p).sum();
        let mut target = self.rng.gen::<f32>() * mass;
        for (id, p) in &probs {
            if target < *p {
                return Some(*id);
            }
            target -= p;
        }
        probs.last().map(|(id, _)| *id)
    }
}

/// The most probable tokens whose (unnormalised) mass first reaches `needed`, most probable
/// first. Sorting 150k candidates per token is slow, so the top few hundred are tried first.
fn nucleus(mut probs: Vec<(u32, f32)>, needed: f32) -> Vec<(u32, f32)> {
    let by_prob_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut head = 256.min(probs.len());
    loop {
        if head < probs.len() {
            probs.select_nth_unstable_by(head, by_prob_desc);
        }
        let mut top: Vec<(u32, f32)> = probs[..head].to_vec();
        let top_mass: f32 = top.iter().map(|(_, p)| p).sum();
        if top_mass >= needed || head == probs.len() {
            top.sort_by(by_prob_desc);
            let mut acc = 0.0;
            let mut keep = 0;
            for (_, p) in &top {
                acc += p;
                keep += 1;
                if acc >= needed {
                    break;
                }
            }
            top.truncate(keep.max(1));
            return top;
        }
        head = (head * 4).min(probs.len());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn greedy_picks_the_largest_and_skips_padding_ids() {
        let mut s = Sampler::new(1, 0.0, 1.0, 3);
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 9.0]), Some(1));
        assert_eq!(s.sample(&[f32::NAN, f32::NAN]), None);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Token 2 holds nearly all the mass; with top_p 0.5 nothing else may be drawn.
        let logits = [0.0, 1.0, 10.0, 2.0];
        let mut s = Sampler::new(7, 1.0, 0.5, 4);
        for _ in 0..200 {
            assert_eq!(s.sample(&logits), Some(2));
        }
        // With top_p 1 and a flat distribution every token shows up.
        let mut s = Sampler::new(7, 1.0, 1.0, 4);
        let mut seen = [false; 4];
        for _ in 0..400 {
            seen[s.sample(&[0.0; 4]).unwrap() as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn nucleus_widens_past_the_first_guess() {
        let probs: Vec<(u32, f32)> = (0..2000).map(|i| (i, 1.0)).collect();
        let kept = nucleus(probs, 900.0);
        assert_eq!(kept.len(), 900);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(seed, 0.9, 0.95, 50);
            (0..30)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
