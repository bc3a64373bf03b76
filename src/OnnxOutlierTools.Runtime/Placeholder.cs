namespace OnnxOutlierTools.Runtime;
