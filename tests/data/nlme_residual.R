# Reference values for bayes_lmm's REML with residual structures (issue 17).
# Run from the repository root:  Rscript tests/data/nlme_residual.R
# Needs r-base-core and r-cran-nlme (Debian packages; never a dependency of bayes_lmm).
# Writes tests/data/orthodont.csv, tests/data/ar1_sim.csv and tests/data/nlme_residual.json.
suppressMessages(library(nlme))
out <- "tests/data"

# --- data ------------------------------------------------------------------------------
orth <- data.frame(Subject = as.character(Orthodont$Subject),
                   Sex = as.character(Orthodont$Sex),  # alphabetical levels: Female is the reference
                   age = Orthodont$age, distance = Orthodont$distance)
orth$occ <- as.integer(orth$age / 2 - 3)              # measurement occasion 1..4
orth$Sex <- factor(orth$Sex)
write.csv(orth, file.path(out, "orthodont.csv"), row.names = FALSE)

# simulated: random intercept + AR(1) errors over integer times with gaps
set.seed(17)
ns <- 40; nt <- 8
sim <- expand.grid(time = 1:nt, subject = sprintf("s%02d", 1:ns), stringsAsFactors = FALSE)
sim <- sim[, c("subject", "time")]
sim$x <- round(rnorm(nrow(sim)), 3)
b <- rnorm(ns, sd = 1.0)[match(sim$subject, sprintf("s%02d", 1:ns))]
e <- unlist(lapply(1:ns, function(i) as.numeric(arima.sim(list(ar = 0.6), n = nt, sd = 0.8))))
sim$y <- round(2 + 0.5 * sim$x + b + e, 4)
keep <- runif(nrow(sim)) > 0.2                        # drop about 20% of rows: gaps in time
sim <- sim[keep, ]
write.csv(sim, file.path(out, "ar1_sim.csv"), row.names = FALSE)

# --- fits --------------------------------------------------------------------------------
ctrl <- lmeControl(msMaxIter = 500, maxIter = 500, tolerance = 1e-10, msTol = 1e-12, niterEM = 100)
gctrl <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12)
fits <- list(
  baseline = lme(distance ~ age + Sex, random = ~ 1 | Subject, data = orth, method = "REML",
                 control = ctrl),
  varident = lme(distance ~ age + Sex, random = ~ 1 | Subject, data = orth, method = "REML",
                 weights = varIdent(form = ~ 1 | Sex), control = ctrl),
  ar1 = lme(y ~ x, random = ~ 1 | subject, data = sim, method = "REML",
            correlation = corAR1(form = ~ time | subject), control = ctrl),
  cs = gls(distance ~ age * Sex, data = orth, method = "REML",
           correlation = corCompSymm(form = ~ 1 | Subject), control = gctrl),
  un = gls(distance ~ age * Sex, data = orth, method = "REML",
           correlation = corSymm(form = ~ occ | Subject), weights = varIdent(form = ~ 1 | occ),
           control = gctrl)
)
datas <- list(baseline = orth, varident = orth, ar1 = sim, cs = orth, un = orth)
strata <- list(varident = "Sex", un = "occ")

num <- function(x) formatC(x, digits = 15, format = "g")
obj <- function(v) paste0("{", paste0("\"", names(v), "\": ", num(v), collapse = ", "), "}")
entry <- function(key) {
  f <- fits[[key]]
  beta <- if (inherits(f, "lme")) fixef(f) else coef(f)
  X <- model.matrix(formula(f), datas[[key]])
  parts <- c(
    sprintf("\"call\": \"%s\"", gsub("\"", "'", paste(deparse(f$call), collapse = " "))),
    sprintf("\"fixed\": %s", obj(beta)),
    sprintf("\"sigma\": %s", num(f$sigma)),
    sprintf("\"loglik\": %s", num(as.numeric(logLik(f)))),
    sprintf("\"logdet_XtX\": %s", num(as.numeric(determinant(crossprod(X))$modulus))),
    sprintf("\"n\": %d, \"p\": %d", nrow(X), ncol(X))
  )
  if (inherits(f, "lme")) {
    parts <- c(parts, sprintf("\"sd_intercept\": %s", num(sqrt(as.numeric(getVarCov(f)[1, 1])))))
  }
  vs <- f$modelStruct$varStruct
  if (!is.null(vs)) {
    col <- strata[[key]]
    w <- varWeights(vs)   # 1 / (SD ratio) per row, in the fit's row order
    lev <- as.character(getGroups(vs))
    sds <- tapply(f$sigma / w, lev, function(s) s[1])
    parts <- c(parts, sprintf("\"residual_sd\": %s", obj(sds)))
  } else {
    parts <- c(parts, sprintf("\"residual_sd\": {\"Residual\": %s}", num(f$sigma)))
  }
  cs <- f$modelStruct$corStruct
  if (!is.null(cs)) {
    parts <- c(parts, sprintf("\"cor\": [%s]", paste(num(coef(cs, unconstrained = FALSE)), collapse = ", ")))
  }
  sprintf("\"%s\": {%s}", key, paste(parts, collapse = ", "))
}
json <- paste0("{\n", paste(sapply(names(fits), entry), collapse = ",\n"),
               sprintf(",\n\"versions\": {\"R\": \"%s\", \"nlme\": \"%s\"}\n}\n",
                       R.version.string, packageVersion("nlme")))
writeLines(json, file.path(out, "nlme_residual.json"))
