"""A Lambda runtime executor for LocalStack without Docker: functions are created and become Active
(their code is stored, nothing is prepared), and an invocation fails with a clear reason. The
project's functions run as binaries (cargo lambda, the local runner) fed from LocalStack's queues."""
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

REASON = "stub runtime executor: LocalStack runs no Lambda code on this host (no Docker)"


class StubRuntimeExecutor(RuntimeExecutor):
    def start(self, env_vars):
        raise RuntimeError(REASON)

    def stop(self):
        pass

    def get_address(self):
        return "127.0.0.1"

    def get_endpoint_from_executor(self):
        return "127.0.0.1"

    def get_runtime_endpoint(self):
        return "http://127.0.0.1:0"

    def invoke(self, payload):
        raise RuntimeError(REASON)

    def get_logs(self):
        return REASON

    @classmethod
    def prepare_version(cls, function_version):
        pass

    @classmethod
    def cleanup_version(cls, function_version):
        pass

    @classmethod
    def validate_environment(cls):
        return True


class StubRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "stub"

    def load(self, *args, **kwargs):
        return StubRuntimeExecutor
