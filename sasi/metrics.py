"""Names of the scores runs report (light: imported by pre-flight checks before anything heavy)."""

# What training reports at every validation (``val_<name>``, see sasi.scoring.SplitScores.metrics): what a
# search may optimise and ASHA may stop on. ``class_f1`` is the headline: a pick counts only as the first pick
# on a particle with that particle's class; ``localisation_f1`` is the SaSi paper's class-agnostic F1.
VALIDATION_METRICS = ("class_f1", "localisation_f1", "precision", "recall", "distance_f1", "class_f1_macro", "picks",
                      "picks_per_truth", "duplicate_fraction", "min_score")
HEADLINE = "class_f1"
