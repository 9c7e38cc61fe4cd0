"""Agent sequences: steps whose value comes from an LLM, a plan script, a human, or a paradigm
composing those (imperative and judgement in all their forms, imperative_input)."""
