//! A person's send hour, learned from when they engage (the notification plan's
//! `preferred_hour`, and what `GET /v1/users/{id}` shows).

/// How a person's send hour is chosen: their engagement by local hour (email and notification
/// opens when there are at least [`MIN_HOUR_EVIDENCE`], else every engagement) shrunk towards the
/// population's histogram with the weight of [`HOUR_PRIOR_WEIGHT`] events; the most likely hour
/// outside the night (22:00–06:00) and the person's own quiet hours. Fewer than
/// [`MIN_HOUR_EVIDENCE`] engaged events with a known local hour: not learned (the default hour).
pub fn learned_hour(
    active: &[f32; 24],
    opens: &[f32; 24],
    population: &[f32],
    quiet: Option<crate::QuietHours>,
) -> Option<i8> {
    let total = |h: &[f32; 24]| h.iter().sum::<f32>();
    let counts = if total(opens) >= MIN_HOUR_EVIDENCE { opens } else { active };
    let n = total(counts);
    if n < MIN_HOUR_EVIDENCE {
        return None;
    }
    let population_total: f32 = population.iter().sum();
    let prior = |h: usize| {
        if population.len() == 24 && population_total > 0.0 { population[h] / population_total } else { 1.0 / 24.0 }
    };
    (6..22usize)
        .filter(|&h| quiet.is_none_or(|q| !q.contains((h * 60) as u16)))
        .map(|h| (h, counts[h] + HOUR_PRIOR_WEIGHT * prior(h)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(h, _)| h as i8)
}

/// Engaged events with a known local hour before a person's send hour counts as learned.
pub const MIN_HOUR_EVIDENCE: f32 = 5.0;
/// The population histogram's weight, in events, when a person's hour is estimated.
pub const HOUR_PRIOR_WEIGHT: f32 = 8.0;

impl crate::Profile {
    /// The person's learned send hour ([`learned_hour`] over their hour histograms), given the
    /// population's histogram and the person's quiet hours.
    pub fn send_hour(&self, population: &[f32], quiet: Option<crate::QuietHours>) -> Option<i8> {
        learned_hour(&self.active_hours.to_f32(), &self.open_hours.to_f32(), population, quiet)
    }
}
