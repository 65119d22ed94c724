//! `Einsum`: the gradient of each operand is itself an `Einsum`, of the incoming gradient with the
//! other operands, written back to the operand's subscripts (`ab,bc->ac` gives `ac,bc->ab` for
//! the first operand). Letters the operand sums on its own (present in no other term) cannot be
//! an `Einsum` output: the gradient is computed without them and broadcast along them. Operands
//! with a repeated letter (diagonals, `ii->i`) are refused; an ellipsis is kept in every term, and
//! what it broadcast is summed back.

use super::context::{Ctx, Grads};
use crate::grad::builder::Builder;
use crate::graph::{attr_s, make_s};

/// One term of an equation: its letters, and where the ellipsis stands (if it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    letters: Vec<char>,
    ellipsis: Option<usize>,
}

impl Term {
    fn parse(s: &str) -> Option<Term> {
        let s = s.trim();
        let (before, after, ellipsis) = match s.find("...") {
            Some(i) => (&s[..i], &s[i + 3..], true),
            None => (s, "", false),
        };
        let mut letters: Vec<char> = before.chars().filter(|c| !c.is_whitespace()).collect();
        let at = letters.len();
        letters.extend(after.chars().filter(|c| !c.is_whitespace()));
        if !letters.iter().all(char::is_ascii_alphabetic) {
            return None;
        }
        Some(Term {
            letters,
            ellipsis: ellipsis.then_some(at),
        })
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.letters.iter().enumerate() {
            if self.ellipsis == Some(i) {
                s.push_str("...");
            }
            s.push(*c);
        }
        if self.ellipsis == Some(self.letters.len()) {
            s.push_str("...");
        }
        s
    }
}

/// The equation's input terms and its output term (made explicit: an implicit output holds the
/// letters that appear once, in alphabetical order, after the ellipsis).
fn parse(equation: &str) -> Option<(Vec<Term>, Term)> {
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation, None),
    };
    let inputs: Vec<Term> = lhs.split(',').map(Term::parse).collect::<Option<_>>()?;
    let output = match rhs {
        Some(r) => Term::parse(r)?,
        None => {
            let mut once: Vec<char> = Vec::new();
            for c in inputs.iter().flat_map(|t| &t.letters) {
                let count = inputs
                    .iter()
                    .flat_map(|t| &t.letters)
                    .filter(|&d| d == c)
                    .count();
                if count == 1 {
                    once.push(*c);
                }
            }
            once.sort_unstable();
            let ellipsis = inputs.iter().any(|t| t.ellipsis.is_some()).then_some(0);
            Term {
                letters: once,
                ellipsis,
            }
        }
    };
    Some((inputs, output))
}

pub(super) fn einsum(b: &mut Builder<'_>, c: &Ctx<'_>) -> Grads {
    let equation = attr_s(c.n, "equation").ok_or(())?;
    let (inputs, output) = parse(&equation).ok_or(())?;
    if inputs.len() != c.n.input.len() {
        return Err(());
    }
    let with_ellipsis = output.ellipsis.is_some() || inputs.iter().any(|t| t.ellipsis.is_some());
    let mut out = vec![None; inputs.len()];
    for (i, term) in inputs.iter().enumerate() {
        if !c.need(i) {
            continue;
        }
        // A repeated letter takes a diagonal: its adjoint is no Einsum.
        let mut seen = term.letters.clone();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(());
        }
        if with_ellipsis && (term.ellipsis.is_none() || output.ellipsis.is_none()) {
            return Err(());
        }
        let elsewhere = |ch: char| {
            output.letters.contains(&ch)
                || inputs
                    .iter()
                    .enumerate()
                    .any(|(j, t)| j != i && t.letters.contains(&ch))
        };
        // The operand's letters that appear in some other term, in the operand's order.
        let kept: Vec<char> = term
            .letters
            .iter()
            .copied()
            .filter(|&ch| elsewhere(ch))
            .collect();
        let kept_term = Term {
            letters: kept.clone(),
            ellipsis: term.ellipsis.map(|at| {
                term.letters[..at]
                    .iter()
                    .filter(|&&ch| elsewhere(ch))
                    .count()
            }),
        };
        let mut terms = vec![output.render()];
        let mut operands: Vec<&str> = vec![&c.g];
        for (j, t) in inputs.iter().enumerate() {
            if j != i {
                terms.push(t.render());
                operands.push(c.x(j));
            }
        }
        let eq = format!("{}->{}", terms.join(","), kept_term.render());
        let mut gi = b.op("Einsum", &operands, vec![make_s("equation", &eq)]);
        if kept.len() < term.letters.len() {
            // Broadcast along the letters summed in this operand alone: insert them as axes of
            // size 1 where the operand has them, then expand to its shape.
            let ellipsis_rank = term.ellipsis.map(|_| {
                b.ranks
                    .get(c.x(i))
                    .map(|r| r.saturating_sub(term.letters.len()))
            });
            let Some(ell) = ellipsis_rank.unwrap_or(Some(0)) else {
                return Err(());
            };
            let axes: Vec<i64> = term
                .letters
                .iter()
                .enumerate()
                .filter(|&(_, &ch)| !elsewhere(ch))
                .map(|(k, _)| {
                    let after_ellipsis = term.ellipsis.is_some_and(|at| k >= at);
                    (k + if after_ellipsis { ell } else { 0 }) as i64
                })
                .collect();
            let axes = b.i64s(&axes);
            let u = b.op("Unsqueeze", &[&gi, &axes], vec![]);
            let shape = b.shape(c.x(i));
            gi = b.op("Expand", &[&u, &shape], vec![]);
        }
        if with_ellipsis {
            gi = b.unb(&gi, c.x(i));
        }
        out[i] = Some(gi);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equations_parse_with_implicit_outputs_and_ellipses() {
        let (i, o) = parse("ij,jk").unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(o.render(), "ik");
        let (i, o) = parse("...ij, ...jk -> ...ik").unwrap();
        assert_eq!(i[0].render(), "...ij");
        assert_eq!(i[1].ellipsis, Some(0));
        assert_eq!(o.render(), "...ik");
        let (_, o) = parse("ba,ac").unwrap();
        assert_eq!(o.render(), "bc");
        assert_eq!(parse("a1,b->ab"), None);
        let (i, _) = parse("ab...c->c").unwrap();
        assert_eq!(
            (i[0].ellipsis, i[0].render()),
            (Some(2), "ab...c".to_string())
        );
    }
}
