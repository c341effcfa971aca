"""Fine-tuning as a service, without HTTP: the job store (`store`), the status machine and OpenAI
request mapping (`service`, `request`, `graders`), uploaded files (`files`), the workers that run jobs
(`worker`) and the family of worker processes beside the API (`family`). Its routes are in `hone.serve`."""
