// The umbrella header: everything a CluPy program needs.
#pragma once

#include "clupy/cluster.hpp"
#include "clupy/errors.hpp"
#include "clupy/future.hpp"
#include "clupy/parallel.hpp"
#include "clupy/progress.hpp"
#include "clupy/this_task.hpp"
