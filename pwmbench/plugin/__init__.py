"""The plugin API's machinery: the interfaces plugins implement, the registries and their checks, discovery and loading, typed options, and what a job on another node reports back."""
