# lme4 REML reference for tests/test_reml_large.py: python tests/data/crossed70k.py && Rscript tests/data/crossed70k_lme4.R
suppressMessages(library(lme4))
d <- read.csv("crossed70k.csv")
m <- lmer(y ~ 1 + service + (1|s) + (1|d) + (1|dept), data = d, REML = TRUE)
vc <- as.data.frame(VarCorr(m))
cat(sprintf('{"lme4": "%s", "sd": {"1|s": %.10f, "1|d": %.10f, "1|dept": %.10f, "Residual": %.10f},\n',
            packageVersion("lme4"), vc$sdcor[1], vc$sdcor[2], vc$sdcor[3], vc$sdcor[4]))
cat(sprintf(' "beta": {"Intercept": %.10f, "service": %.10f}, "se": {"Intercept": %.10f, "service": %.10f},\n',
            fixef(m)[1], fixef(m)[2], sqrt(diag(vcov(m)))[1], sqrt(diag(vcov(m)))[2]))
cat(sprintf(' "loglik": %.8f}\n', as.numeric(logLik(m))))
