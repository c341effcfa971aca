"""Fine-tuning as a service: the job store (`store`), the status machine and OpenAI request mapping
(`service`), the workers that run jobs (`worker`), and the HTTP pieces (`http`, `objects`, `app`)."""
