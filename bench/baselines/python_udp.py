# Baseline: a Python asyncio UDP server answering each datagram with
# "[<time>]" + the payload (time.ctime, the tutorial's format).
# Run: python3 bench/baselines/python_udp.py --port 0
import asyncio
import sys
import time


class Stamp(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(f"[{time.ctime()}]".encode() + data, addr)


async def main():
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Stamp, local_addr=("127.0.0.1", port)
    )
    print(f"Listening on udp://127.0.0.1:{transport.get_extra_info('sockname')[1]}", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
