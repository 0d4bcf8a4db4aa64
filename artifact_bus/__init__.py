__version__ = "0.1.0"

from artifact_bus.core import (BusError, BusUnavailable, ConfigError, KindError, ManifestError, NotFound,
                               SchemaMismatch, WriterBusy, load_config)
from artifact_bus.submit import Batch, Job, NewKindWarning, Receipt, SpooledWarning, batch, flush, job, submit
from artifact_bus.ingest import Report, ingest
from artifact_bus.catalog import catalog
from artifact_bus.reader import compare, read, read_relation, runs
from artifact_bus.export import export
from artifact_bus.quarantine import requeue
