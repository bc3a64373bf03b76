using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Import.Planted;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Mitigation.Measurement;

namespace OnnxOutlierTools.Tests.Mitigation.Fp16Safe;

/// <summary>The planted model's weights (stories260K with planted outliers, as onnx-models/planted-llama-decomposed) with
/// its massive-activation neurons 172 and 173 of block 1 made 256x larger at the down-projection input: their up rows
/// times 256, their down columns / 256 (exact in fp32, the same function), so y6 reaches 600 * 256 = 153600, beyond
/// fp16's 65504. Written as a float32 model and, by the repository's own Llama builder, as a float16 one (weights,
/// activations and logits fp16, RMSNorm statistics in fp32 as HF's LlamaRMSNorm), plus the fp32 calibration.</summary>
public sealed class OverflowingModels : IDisposable
{
    public const int Boost = 256;
    public static readonly int[] Neurons = [172, 173];
    public const int Block = 1;

    private readonly TempFolder _temp = new("fp16-safe");

    public OverflowingModels()
    {
        var weights = new OutlierPlanter(Llama2cCheckpoint.Load(Fixtures.Path("llama2c", "stories260K.bin")), PlantedOutlierPlan.Default).Plant();
        var c = weights.Config;
        var layer = weights.Layers[Block];
        foreach (int n in Neurons)
        {
            for (int i = 0; i < c.Dim; i++) layer.W3[(long)n * c.Dim + i] *= Boost;
            for (int r = 0; r < c.Dim; r++) layer.W2[(long)r * c.HiddenDim + n] /= Boost;
        }
        Fp32 = Write(weights, TensorDataType.Float, "fp32");
        Fp16 = Write(weights, TensorDataType.Float16, "fp16");
        Windows = CalibratedModel.Windows(seqLen: 64, maxTokens: 256, model: Fp32);
        (Fp32Stats, Fp32Analysis) = CalibratedModel.Calibrate(Fp32, Windows);
    }

    public string Fp32 { get; }
    public string Fp16 { get; }
    public IReadOnlyList<int[]> Windows { get; }
    public CalibrationStatistics Fp32Stats { get; }
    public AnalysisResult Fp32Analysis { get; }
    public string Folder => _temp.FullPath;

    private string Write(DecoderWeights weights, TensorDataType type, string name)
    {
        string path = _temp.Path(name, "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var model = LlamaOnnxBuilder.Build(weights, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.Decomposed, WeightType = type });
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External });
        return path;
    }

    public void Dispose() => _temp.Dispose();
}
