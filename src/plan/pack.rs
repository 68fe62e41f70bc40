//! Dividing a runtime set into wheels that each fit under the size limit.

/// Packs items (name, compressed bytes) into as few bins of `capacity` bytes as first-fit
/// decreasing finds. The result depends only on the items (ties broken by name), never on their
/// order. Returns the bins as lists of item indices, or the first item that cannot fit alone.
pub fn pack(items: &[(String, u64)], capacity: u64) -> Result<Vec<Vec<usize>>, usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[b]
            .1
            .cmp(&items[a].1)
            .then_with(|| items[a].0.cmp(&items[b].0))
    });
    let mut bins: Vec<(u64, Vec<usize>)> = Vec::new();
    for i in order {
        let size = items[i].1;
        if size > capacity {
            return Err(i);
        }
        match bins.iter_mut().find(|(used, _)| used + size <= capacity) {
            Some((used, members)) => {
                *used += size;
                members.push(i);
            }
            None => bins.push((size, vec![i])),
        }
    }
    Ok(bins
        .into_iter()
        .map(|(_, mut m)| {
            m.sort_by(|&a, &b| items[a].0.cmp(&items[b].0));
            m
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_deterministically_and_refuses_giants() {
        let items: Vec<(String, u64)> = [("a", 60), ("b", 50), ("c", 40), ("d", 30), ("e", 10)]
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        let bins = pack(&items, 100).unwrap();
        assert_eq!(bins.len(), 2);
        assert!(
            bins.iter()
                .all(|b| b.iter().map(|&i| items[i].1).sum::<u64>() <= 100)
        );
        let mut reversed = items.clone();
        reversed.reverse();
        let again = pack(&reversed, 100).unwrap();
        let names = |bins: &Vec<Vec<usize>>, items: &[(String, u64)]| -> Vec<Vec<String>> {
            bins.iter()
                .map(|b| b.iter().map(|&i| items[i].0.clone()).collect())
                .collect()
        };
        assert_eq!(names(&bins, &items), names(&again, &reversed));
        assert_eq!(pack(&items, 55), Err(0));
    }
}
