namespace OnnxOutlierTools.Analysis;
