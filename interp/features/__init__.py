"""Features at corpus scale: sparse autoencoders (EleutherAI's sparsify), their quality, and concept recovery.

Train a TopK SAE on activations captured by interp (:func:`train_sae`), measure it (:func:`sae_quality`), load the
one shipped beside a reference checkpoint (:func:`load_sae`; importing this package also makes ``"sae:<site>"``
capturable), browse a feature over an activation store (:func:`feature_examples`), steer with it
(:func:`steer_with_feature`), and score SAE features, neurons and random directions against the reference world's
planted concepts (:func:`concept_recovery`).
"""

from interp.features.concept_text import FAMILIES, ConceptText, concept_names, concept_text
from interp.features.concepts import CANDIDATES, GOOD_F1, ConceptRecovery, best_f1, concept_recovery, f1_at
from interp.features.quality import SaeQuality, sae_quality, spliced_loss
from interp.features.sae import SparseAutoencoder, attached, load_file, load_sae, sae_folder, shipped_sites
from interp.features.training import TrainLog, site_activations, train_sae
from interp.features.units import (
    UNIT_KINDS,
    direction_probe,
    feature_examples,
    steer_with_direction,
    steer_with_feature,
    steering_direction,
    world_store,
)

__all__ = [
    "CANDIDATES",
    "ConceptRecovery",
    "ConceptText",
    "FAMILIES",
    "GOOD_F1",
    "SaeQuality",
    "SparseAutoencoder",
    "TrainLog",
    "UNIT_KINDS",
    "attached",
    "best_f1",
    "concept_names",
    "concept_recovery",
    "concept_text",
    "direction_probe",
    "f1_at",
    "feature_examples",
    "load_file",
    "load_sae",
    "sae_folder",
    "sae_quality",
    "shipped_sites",
    "site_activations",
    "spliced_loss",
    "steer_with_direction",
    "steer_with_feature",
    "steering_direction",
    "train_sae",
    "world_store",
]
