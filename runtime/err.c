/* err.c -- names for dts_err. */
#include "runtime/err.h"

const char *dts_strerror(dts_err e) {
  switch (e) {
  case DTS_OK: return "ok";
  case DTS_EINVAL: return "invalid argument";
  case DTS_ENOTFOUND: return "not found";
  case DTS_EEXIST: return "already exists";
  case DTS_EPRECOND: return "failed precondition";
  case DTS_EIO: return "i/o error";
  case DTS_ECORRUPT: return "corrupt data";
  case DTS_ECLOSED: return "closed";
  case DTS_ELIMIT: return "limit exceeded";
  case DTS_ELOCKED: return "locked by another process";
  case DTS_EUNSUPPORTED: return "unsupported";
  }
  return "unknown error";
}
