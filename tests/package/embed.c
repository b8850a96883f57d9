/* embed.c -- the smallest program built against the packaged libdtsd (its
 * header and pkg-config file): starts a server on a free port with an
 * ephemeral store, prints the port, stops.  tests/package/check.sh. */
#include <dtsd.h>

#include <stdio.h>

int main(void) {
  dtsd_options o;
  dtsd_options_init(&o);
  o.address = "127.0.0.1:0";
  o.http_address = "off";
  o.health_address = "off";
  o.ephemeral = true;
  dtsd *d;
  char err[512];
  if (dtsd_start(&o, &d, err, sizeof(err)) != 0) {
    fprintf(stderr, "embed: %s\n", err);
    return 1;
  }
  printf("%d\n", dtsd_port(d));
  dtsd_stop(d);
  return 0;
}
