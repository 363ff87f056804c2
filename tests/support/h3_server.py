"""ringline.http3's own server as a test peer process:
``python h3_server.py PORT CERT KEY [ENGINE]`` serves ringline.http3's demo
app on 127.0.0.1:PORT until it gets SIGTERM (support.h3_servers.OurServer
starts and stops it)."""
import asyncio
import signal
import sys

import ringline
import ringline.http3 as h3


async def main(port, cert, key, engine):
    srv = await h3.serve("127.0.0.1", port, certfile=cert, keyfile=key, engine=engine)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
    srv.close()


if __name__ == "__main__":
    ringline.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3],
                      sys.argv[4] if len(sys.argv) > 4 else None))
