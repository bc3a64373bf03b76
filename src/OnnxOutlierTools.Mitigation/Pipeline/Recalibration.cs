using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Mitigation.Pipeline;

/// <summary>Calibration statistics of a staged model (probed in memory, as analyze does, on the same windows), for steps
/// that must see the activations as the earlier steps left them.</summary>
public static class Recalibration
{
    public static CalibrationStatistics Run(string modelPath, IReadOnlyList<int[]> windows, SessionSettings session, ProbeSettings? probes = null)
    {
        using var model = ModelReader.Load(modelPath);
        var recognition = StructureRecognizer.Recognize(model);
        var structure = recognition.Structure ?? throw new InvalidOperationException($"{modelPath}: not recognized: {recognition.Message}");
        var pass = new ProbePass(structure, probes, modelPath);
        pass.Run(new PassContext(model));
        using var probed = InMemoryModel.Open(model, session);
        return CalibrationRunner.Run(probed, pass.Manifest!, windows, new CalibrationRunOptions(), structure.Inputs.InputIds?.Name);
    }
}
