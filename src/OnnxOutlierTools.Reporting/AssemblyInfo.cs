namespace OnnxOutlierTools.Reporting;
