# Reference values for bayes_lmm's REML with residual structures (issue 17).
# Run from the repository root:  Rscript tests/data/nlme_residual.R
# Needs r-base-core and r-cran-nlme (Debian packages; never a dependency of bayes_lmm).
# Writes tests/data/{orthodont,ar1_sim,eight_schools,meta_sim}.csv and tests/data/nlme_residual.json.
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

# known residual SDs: the eight schools, and a simulated meta-regression with tau > 0
schools <- data.frame(school = LETTERS[1:8], y = c(28, 8, -3, 7, -1, 1, 18, 12),
                      sigma = c(15, 10, 16, 11, 9, 11, 10, 18))
write.csv(schools, file.path(out, "eight_schools.csv"), row.names = FALSE)
set.seed(5)
meta <- data.frame(study = sprintf("m%02d", 1:30), x = round(runif(30), 3), se = round(runif(30, 0.2, 0.8), 3))
meta$y <- round(0.5 + meta$x + rnorm(30, sd = 0.4) + rnorm(30, sd = meta$se), 4)
write.csv(meta, file.path(out, "meta_sim.csv"), row.names = FALSE)

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
           control = gctrl),
  cs_sdby = gls(distance ~ age * Sex, data = orth, method = "REML",
                correlation = corCompSymm(form = ~ 1 | Subject), weights = varIdent(form = ~ 1 | Sex),
                control = gctrl),
  ar1_gls = gls(y ~ x, data = sim, method = "REML", correlation = corAR1(form = ~ time | subject),
                control = gctrl),
  # KnownSD: Var(e_i) = sigma^2 * s_i^2 with sigma fixed at 1 (lmeControl(sigma = 1))
  schools = lme(y ~ 1, random = ~ 1 | school, data = schools, method = "REML",
                weights = varFixed(~ I(sigma^2)), control = lmeControl(sigma = 1)),
  meta = lme(y ~ x, random = ~ 1 | study, data = meta, method = "REML",
             weights = varFixed(~ I(se^2)), control = lmeControl(sigma = 1))
)
datas <- list(baseline = orth, varident = orth, ar1 = sim, cs = orth, un = orth, cs_sdby = orth,
              ar1_gls = sim, schools = schools, meta = meta)
strata <- list(varident = "Sex", un = "occ", cs_sdby = "Sex")

num <- function(x) formatC(x, digits = 15, format = "g")
obj <- function(v) paste0("{", paste0("\"", names(v), "\": ", num(v), collapse = ", "), "}")
entry <- function(key) {
  f <- fits[[key]]
  beta <- if (inherits(f, "lme")) fixef(f) else coef(f)
  X <- model.matrix(formula(f), datas[[key]])
  parts <- c(
    sprintf("\"call\": \"%s\"", gsub("\"", "'", paste(deparse(f$call), collapse = " "))),
    sprintf("\"fixed\": %s", obj(beta)),
    sprintf("\"se\": %s", obj(sqrt(diag(vcov(f))))),
    sprintf("\"sigma\": %s", num(f$sigma)),
    sprintf("\"loglik\": %s", num(as.numeric(logLik(f)))),
    sprintf("\"logdet_XtX\": %s", num(as.numeric(determinant(crossprod(X))$modulus))),
    sprintf("\"n\": %d, \"p\": %d", nrow(X), ncol(X))
  )
  if (inherits(f, "lme")) {
    parts <- c(parts, sprintf("\"sd_intercept\": %s", num(sqrt(as.numeric(getVarCov(f)[1, 1])))))
  }
  vs <- f$modelStruct$varStruct
  if (!is.null(vs) && !is.null(strata[[key]])) {
    col <- strata[[key]]
    w <- varWeights(vs)   # 1 / (SD ratio) per row, in the fit's row order
    lev <- as.character(getGroups(vs))
    sds <- tapply(f$sigma / w, lev, function(s) s[1])
    parts <- c(parts, sprintf("\"residual_sd\": %s", obj(sds)))
  } else if (is.null(vs)) {
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
