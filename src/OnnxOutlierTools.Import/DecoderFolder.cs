using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Import;

/// <summary>Writes a decoder the way exporters lay out a model folder: model.onnx with its weights in
/// external data (model.onnx.data) and an HF-style config.json (bos/eos ids, sizes) beside it.</summary>
public static class DecoderFolder
{
    /// <summary>Flavour names used on command lines.</summary>
    public static IReadOnlyList<string> FlavourNames { get; } = ["decomposed", "decomposed-past", "genai-gqa"];

    public static LlamaOnnxFlavour ParseFlavour(string name) => name switch
    {
        "decomposed" => LlamaOnnxFlavour.Decomposed,
        "decomposed-past" => LlamaOnnxFlavour.DecomposedWithPast,
        "genai-gqa" => LlamaOnnxFlavour.GenAiGqa,
        _ => throw new ArgumentException($"unknown flavour '{name}' ({string.Join(", ", FlavourNames)})"),
    };

    public static SaveResult Save(Model model, string outDir, DecoderConfig config, LlamaOnnxFlavour flavour, string dtype)
    {
        var result = ModelWriter.Save(model, Path.Combine(outDir, "model.onnx"), new SaveOptions { Layout = TensorLayout.External });
        string configPath = Path.Combine(outDir, "config.json");
        string temp = configPath + ".tmp";
        File.WriteAllText(temp, HfConfigJson.Create(config, flavour != LlamaOnnxFlavour.Decomposed, dtype));
        File.Move(temp, configPath, overwrite: true);
        return result;
    }

    /// <summary>Converts a llama2.c checkpoint into a model folder.</summary>
    public static SaveResult FromLlama2c(string checkpoint, string outDir, LlamaOnnxFlavour flavour, bool fp16)
    {
        var weights = Llama2cCheckpoint.Load(checkpoint);
        var options = new LlamaOnnxOptions
        {
            Flavour = flavour,
            WeightType = fp16 ? Tensors.TensorDataType.Float16 : Tensors.TensorDataType.Float,
            Description = $"converted from llama2.c checkpoint {Path.GetFileName(checkpoint)}",
        };
        using var model = LlamaOnnxBuilder.Build(weights, options);
        return Save(model, outDir, weights.Config, flavour, fp16 ? "float16" : "float32");
    }
}
