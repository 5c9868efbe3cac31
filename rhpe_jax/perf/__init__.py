"""Performance tools: hardware data sheets, ahead-of-time TPU compiles, timing."""
