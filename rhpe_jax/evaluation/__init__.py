"""Scoring predictions the way the paper reports them: PCK/PCKh tables, curves,
visibility AP, the mean-pose baseline, prediction files. Receives a predict
function; never imports training."""
