/* err.h -- the typed error enum every dtsd module returns.
 *
 * Functions return dts_err and pass results through out-params.  The
 * server maps each code to a gRPC status at the edge (server/).
 */
#ifndef DTS_RUNTIME_ERR_H
#define DTS_RUNTIME_ERR_H

typedef enum {
  DTS_OK = 0,
  DTS_EINVAL,      /* bad argument or input */
  DTS_ENOTFOUND,   /* no such instance, hub, key */
  DTS_EEXIST,      /* already exists */
  DTS_EPRECOND,    /* wrong state for the request */
  DTS_EIO,         /* the disk or the OS failed */
  DTS_ECORRUPT,    /* stored data does not decode */
  DTS_ECLOSED,     /* the object is shutting down or closed */
  DTS_ELIMIT,      /* a configured limit was hit */
  DTS_ELOCKED,     /* held by another process (data directory) */
  DTS_EUNSUPPORTED /* an operation this server does not offer */
} dts_err;

/* A static string naming the error; never NULL. */
const char *dts_strerror(dts_err e);

#endif
