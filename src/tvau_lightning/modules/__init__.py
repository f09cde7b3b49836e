"""Plain nn.Modules (no Lightning): the AHD, the RAE and the prompt template bank."""
