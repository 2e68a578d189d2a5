"""The Lightning side: the LightningModule, trainers, resume, the dense-teacher cache and experiment tracking."""
