"""The launch layer (DESIGN.md §3): compose and check a job's config, build its data, model and
sources' configs from it, and hand the jobs to Hydra. Recipes and the CLI sit above it."""
