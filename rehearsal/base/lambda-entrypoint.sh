#!/bin/sh
# Entry point of gangway's Lambda Python base image, with the official image's behaviour:
# outside Lambda (no AWS_LAMBDA_RUNTIME_API) the Runtime Interface Emulator serves the
# invoke API on :8080 and runs the runtime client itself; under a Runtime API (real Lambda,
# or an RIE that is already PID 1 and started this script) the runtime client runs directly.
if [ $# -lt 1 ]; then
  echo "lambda-entrypoint.sh: the handler (module.function) must be the first argument" >&2
  exit 142
fi
export _HANDLER="$1"

if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/lang/bin/python3 -m awslambdaric "$@"
else
  exec /var/lang/bin/python3 -m awslambdaric "$@"
fi
