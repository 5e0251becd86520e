//! A resumable line search along `x + α p`: one trial step in, one decision out, so a
//! batch of entities can search in lockstep with one batched evaluation per round.
//!
//! With `φ(α) = F(x + α p)`, a step is accepted when it satisfies the weak Wolfe conditions
//!
//! ```text
//! φ(α) ≤ φ(0) + c₁ α φ'(0)          (sufficient decrease, c₁ = 1e-4)
//! φ'(α) ≥ c₂ φ'(0)                  (curvature, c₂ = 0.9)
//! ```
//!
//! or, when `φ(α) − φ(0)` is within the evaluator's noise `ε`, the approximate Wolfe
//! conditions of Hager & Zhang (SIAM J. Optim. 16(1), 2005, eq. 4.1):
//! `(2c₁ − 1) φ'(0) ≥ φ'(α) ≥ c₂ φ'(0)` and `φ(α) ≤ φ(0) + ε`. The second test lets an
//! f32 evaluator converge where plain Armijo stalls on rounding noise.
//!
//! A step that fails sufficient decrease (or gives a non-finite loss) becomes the upper
//! end of a bracket; one that fails curvature becomes the lower end. The next trial is
//! the minimiser of the cubic through both ends, clamped to the inner 80% of the
//! bracket (bisection if the cubic has no minimiser), or an extrapolation by 4× while no upper end is known.

const C1: f64 = 1e-4;
const C2: f64 = 0.9;
/// Largest extrapolation step relative to the first trial.
const MAX_EXTRAPOLATION: f64 = 1e10;

/// One evaluated point on the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinePoint {
    pub alpha: f64,
    pub value: f64,
    pub slope: f64,
}

/// What the search wants next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LineDecision {
    /// Evaluate at this step.
    Try(f64),
    /// Accept this point (an evaluated point; `Accept(lo)` may be an earlier one).
    Accept(LinePoint),
    /// No acceptable step was found within the evaluation budget.
    Fail,
}

/// State of one entity's line search.
#[derive(Debug, Clone)]
pub struct LineSearch {
    origin: LinePoint,
    noise: f64,
    lo: LinePoint,
    hi: Option<LinePoint>,
    first_step: f64,
    pending: f64,
    evaluations: usize,
    max_evaluations: usize,
}

impl LineSearch {
    /// Start at `φ(0) = value`, `φ'(0) = slope < 0`; `noise` is the absolute size of
    /// loss differences the evaluator cannot resolve.
    pub fn new(
        value: f64,
        slope: f64,
        noise: f64,
        first_step: f64,
        max_evaluations: usize,
    ) -> Self {
        let origin = LinePoint {
            alpha: 0.0,
            value,
            slope,
        };
        LineSearch {
            origin,
            noise,
            lo: origin,
            hi: None,
            first_step,
            pending: first_step,
            evaluations: 0,
            max_evaluations,
        }
    }

    /// The step whose evaluation the search waits for.
    pub fn pending(&self) -> f64 {
        self.pending
    }

    /// The best point with sufficient decrease seen so far (the origin if none).
    pub fn best(&self) -> LinePoint {
        self.lo
    }

    /// Feed the evaluation of the pending step; get the next decision.
    pub fn observe(&mut self, p: LinePoint) -> LineDecision {
        let decision = self.decide(p);
        if let LineDecision::Try(next) = decision {
            self.pending = next;
        }
        decision
    }

    fn decide(&mut self, p: LinePoint) -> LineDecision {
        self.evaluations += 1;
        let o = self.origin;
        let armijo = p.value <= o.value + C1 * p.alpha * o.slope;
        let curvature = p.slope >= C2 * o.slope;
        let approx_wolfe =
            p.value <= o.value + self.noise && (2.0 * C1 - 1.0) * o.slope >= p.slope && curvature;
        if p.value.is_finite() && p.slope.is_finite() && ((armijo && curvature) || approx_wolfe) {
            return LineDecision::Accept(p);
        }
        if !p.value.is_finite() || !p.slope.is_finite() || !armijo || p.value > self.lo.value {
            self.hi = Some(p);
        } else {
            self.lo = p;
        }
        if self.evaluations >= self.max_evaluations {
            return self.give_up();
        }
        let next = match self.hi {
            None => (4.0 * p.alpha).min(MAX_EXTRAPOLATION * self.first_step),
            Some(hi) => {
                let width = hi.alpha - self.lo.alpha;
                if width <= f64::EPSILON * hi.alpha.max(f64::MIN_POSITIVE) {
                    return self.give_up();
                }
                let (a, b) = (self.lo.alpha + 0.1 * width, hi.alpha - 0.1 * width);
                match cubic_minimizer(self.lo, hi) {
                    Some(t) => t.clamp(a, b),
                    None => 0.5 * (self.lo.alpha + hi.alpha),
                }
            }
        };
        LineDecision::Try(next)
    }

    fn give_up(&self) -> LineDecision {
        if self.lo.alpha > 0.0 {
            LineDecision::Accept(self.lo)
        } else {
            LineDecision::Fail
        }
    }
}

/// Minimiser of the cubic interpolating value and slope at `a` and `b` (Nocedal & Wright eq. 3.59).
fn cubic_minimizer(a: LinePoint, b: LinePoint) -> Option<f64> {
    if !(a.value.is_finite() && b.value.is_finite() && a.slope.is_finite() && b.slope.is_finite()) {
        return None;
    }
    let d1 = a.slope + b.slope - 3.0 * (a.value - b.value) / (a.alpha - b.alpha);
    let disc = d1 * d1 - a.slope * b.slope;
    if disc < 0.0 {
        return None;
    }
    let d2 = (b.alpha - a.alpha).signum() * disc.sqrt();
    let denom = b.slope - a.slope + 2.0 * d2;
    if denom == 0.0 {
        return None;
    }
    let t = b.alpha - (b.alpha - a.alpha) * (b.slope + d2 - d1) / denom;
    t.is_finite().then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl Fn(f64) -> (f64, f64), first: f64) -> (LineDecision, usize) {
        let (v0, s0) = f(0.0);
        let mut ls = LineSearch::new(v0, s0, 0.0, first, 30);
        let mut alpha = first;
        for n in 1..=30 {
            let (v, s) = f(alpha);
            match ls.observe(LinePoint {
                alpha,
                value: v,
                slope: s,
            }) {
                LineDecision::Try(a) => alpha = a,
                d => return (d, n),
            }
        }
        unreachable!()
    }

    #[test]
    fn accepts_the_exact_step_of_a_quadratic_at_once() {
        let (d, n) = run(|a| ((a - 1.0).powi(2), 2.0 * (a - 1.0)), 1.0);
        assert_eq!(n, 1);
        assert!(matches!(d, LineDecision::Accept(p) if p.alpha == 1.0));
    }

    #[test]
    fn backtracks_from_a_far_step_with_the_cubic() {
        let (d, n) = run(|a| ((a - 1.0).powi(2), 2.0 * (a - 1.0)), 100.0);
        match d {
            LineDecision::Accept(p) => assert!((p.alpha - 1.0).abs() < 0.5, "{p:?}"),
            _ => panic!("{d:?}"),
        }
        assert!(n <= 3, "took {n}");
    }

    #[test]
    fn extrapolates_from_a_tiny_step() {
        let (d, _) = run(|a| ((a - 1.0).powi(2), 2.0 * (a - 1.0)), 1e-3);
        assert!(matches!(d, LineDecision::Accept(p) if p.alpha > 0.05));
    }

    #[test]
    fn a_non_finite_loss_is_a_bracket_end() {
        let (d, _) = run(
            |a| {
                if a > 2.0 {
                    (f64::INFINITY, f64::NAN)
                } else {
                    ((a - 1.0).powi(2), 2.0 * (a - 1.0))
                }
            },
            50.0,
        );
        assert!(matches!(d, LineDecision::Accept(p) if p.alpha <= 2.0));
    }

    #[test]
    fn fails_when_no_step_decreases() {
        // The claimed slope is negative but the function only rises: no acceptable step.
        let mut ls = LineSearch::new(0.0, -1.0, 0.0, 1.0, 10);
        let mut alpha = 1.0;
        loop {
            match ls.observe(LinePoint {
                alpha,
                value: alpha,
                slope: 1.0,
            }) {
                LineDecision::Try(a) => alpha = a,
                LineDecision::Fail => break,
                d => panic!("{d:?}"),
            }
        }
    }
}
