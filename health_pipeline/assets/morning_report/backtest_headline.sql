-- The backtest of the scorecard in force ($scoring_version): per lead time, the AUC with its interval
-- and each band's outcomes, churns and churn rate (also what the renewals' forecast is calibrated on).
SELECT s."lead_days", s."n_outcomes", s."n_churned", s."auc", s."auc_ci_low", s."auc_ci_high",
       s."at_risk_precision", s."at_risk_recall",
       list({'band': b."health_band", 'outcomes': b."outcomes", 'churned': b."churned", 'churn_rate': b."churn_rate"}
            ORDER BY list_position($bands::VARCHAR[], b."health_band")) AS "bands"
FROM "export"."backtest_summary" s
LEFT JOIN "export"."backtest_bands" b USING ("scorecard_version", "lead_days")
WHERE s."scorecard_version" = $scoring_version
GROUP BY ALL
ORDER BY s."lead_days"
