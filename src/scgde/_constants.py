"""Registry keys, likelihood names and other constants shared across scgde."""

from scvi import REGISTRY_KEYS

X_KEY = REGISTRY_KEYS.X_KEY
BATCH_KEY = REGISTRY_KEYS.BATCH_KEY
CAT_COVS_KEY = REGISTRY_KEYS.CAT_COVS_KEY
CONT_COVS_KEY = REGISTRY_KEYS.CONT_COVS_KEY
#: Registry key of the group (set) of every cell (:class:`scgde.data.GroupField`).
GROUP_REGISTRY_KEY = "group"
#: Registry key of protein counts (a second count modality, e.g. CITE-seq ADTs).
PROTEIN_KEY = REGISTRY_KEYS.PROTEIN_EXP_KEY

#: Keys of the registry that scvi-tools keeps (and saves) for a model's AnnData
#: (``AnnDataManager.registry``): the arguments of ``setup_anndata``, and the state of each
#: registered field (e.g. the feature names of ``X_KEY``).
SETUP_ARGS_KEY = "setup_args"
FIELD_REGISTRIES_KEY = "field_registries"
STATE_REGISTRY_KEY = "state_registry"

#: Tensor key holding, for every cell of a minibatch, the index of its set (0..n_sets-1).
SET_IDS_KEY = "set_ids"

#: Likelihoods that model raw counts and therefore require non-negative integer data.
COUNT_LIKELIHOODS = ("nb", "zinb", "poisson")
#: Likelihoods for continuous data (log-normalised values, a representation in ``obsm``).
CONTINUOUS_LIKELIHOODS = ("gaussian",)
LIKELIHOODS = COUNT_LIKELIHOODS + CONTINUOUS_LIKELIHOODS

#: Target library size of the log1p normalisation the set encoder reads for count data.
ENCODER_TARGET_SUM = 1e4
#: Target total of the log1p normalisation the set encoder reads for protein counts.
PROTEIN_ENCODER_TARGET_SUM = 1e3

#: Key of ``adata.uns`` where the settings of the last embedding are recorded.
UNS_SETTINGS_KEY = "gde"
#: Suffixes of the ``uns`` keys of an embedding's standard errors and covariances.
SE_SUFFIX, COV_SUFFIX = "_se", "_cov"
#: Default key under which embeddings are written to ``adata.uns`` and ``adata.obsm``.
DEFAULT_KEY_ADDED = "X_gde"
#: obs column holding the combined group label when ``group_key`` is a list of columns.
COMBINED_GROUP_SEPARATOR = " | "

#: Tensor key holding, for every cell of a minibatch, its group's label code (semi-supervised
#: group labels); ``UNLABELED_CODE`` for groups without a label.
GROUP_LABEL_KEY = "group_label"
UNLABELED_CODE = -1
