//! The order in which the sides of a comparison take their turn.

/// The sides (0..sides) in the order they go in `round`: each round starts one later,
/// so over `sides` rounds every side goes first once and slow drifts of the machine
/// (thermal, page cache, background work) spread evenly over them.
pub fn turns(round: usize, sides: usize) -> impl Iterator<Item = usize> {
    (0..sides).map(move |k| (round + k) % sides)
}

#[cfg(test)]
mod tests {
    use super::turns;

    #[test]
    fn every_side_goes_first_once_per_cycle() {
        let firsts: Vec<usize> = (0..3).map(|r| turns(r, 3).next().unwrap()).collect();
        assert_eq!(firsts, [0, 1, 2]);
        assert_eq!(turns(1, 2).collect::<Vec<_>>(), [1, 0]);
    }
}
